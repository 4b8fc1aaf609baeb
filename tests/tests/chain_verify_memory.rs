//! `chain::file::verify` checks a chain file in bounded memory, where `read` keeps every event: the runtime writes
//! chain files larger than memory by design (`limits.chain_memory_bytes`), and `theater chain verify` must not
//! run out of memory on them. Measured with a counting allocator (`theater_tests::heap`; this test binary's only
//! test, so no other test's allocations are counted).

use std::io::BufReader;

use theater_runtime::chain::file::{self, Ending};
use theater_runtime::chain::{ChainEvent, ChainWriter};
use theater_tests::heap::{Counting, peak, reset_peak};

#[global_allocator]
static HEAP: Counting = Counting;

#[test]
fn a_chain_file_is_verified_in_bounded_memory() {
    const EVENTS: usize = 48 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.jsonl");
    let mut writer = ChainWriter::create(&path).unwrap();
    let mut parent = None;
    let payload = "x".repeat(1024);
    for i in 0..EVENTS {
        let event_type = "theater:simple/runtime/log".to_owned();
        let data = format!(r#"{{"params":{{"msg":"{payload}{i}"}},"result":null}}"#).into_bytes();
        let timestamp = 1_700_000_000_000 + i as u64;
        let hash = ChainEvent::compute_hash(parent.as_ref(), &event_type, &data, timestamp);
        writer
            .append(&ChainEvent {
                hash,
                parent_hash: parent,
                event_type,
                data,
                timestamp,
                description: None,
            })
            .unwrap();
        parent = Some(hash);
    }
    writer.close().unwrap();
    let size = std::fs::metadata(&path).unwrap().len() as usize;

    let before = reset_peak();
    let verified = file::verify(BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
    let verify_peak = peak() - before;
    assert_eq!(verified.count, EVENTS);
    assert_eq!(verified.head, parent);
    assert_eq!(verified.ending, Ending::Closed);

    // What reading the file whole takes, for comparison: the same file held in memory.
    let before = reset_peak();
    let read = file::read(BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
    read.chain.verify().unwrap();
    let read_peak = peak() - before;
    assert_eq!(read.chain.len(), EVENTS);
    eprintln!("file {size} bytes: verify peaked at {verify_peak} heap bytes, read at {read_peak}");
    assert!(
        read_peak > size,
        "reading whole holds the file: {read_peak} of {size}"
    );
    assert!(
        verify_peak < size / 2,
        "verify held {verify_peak} bytes for a {size}-byte file"
    );
}
