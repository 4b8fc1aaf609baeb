//! The `theater` command, run as a subprocess on the demo actor and on saved chains.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn theater(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_theater"))
        .args(args)
        .output()
        .expect("run theater")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `theater run MANIFEST --chain-out CHAIN --data-dir DATA`.
fn run_with_chain(manifest: &Path, chain: &Path, data: &Path) -> Output {
    theater(&[
        "run",
        manifest.to_str().unwrap(),
        "--chain-out",
        chain.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ])
}

/// Runs the demo with its chain saved to `dir`/demo.chain.jsonl (and `dir` as its data folder); asserts that it
/// stopped cleanly and returns the chain file.
fn recorded_demo(dir: &Path) -> PathBuf {
    let chain = dir.join("demo.chain.jsonl");
    let out = run_with_chain(&demo_manifest(), &chain, dir);
    assert!(out.status.success(), "{}", text(&out));
    chain
}

fn demo_manifest() -> PathBuf {
    // Ensures the guests are built (theater-tests' build script) before the manifest is used.
    assert!(Path::new(theater_tests::guests::DEMO).exists());
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/actors/demo/demo.toml")
}

#[test]
fn run_demo_prints_log_and_a_verified_chain_then_verify_and_show_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("demo.chain.jsonl");
    let data = dir.path().join("data");
    let out = run_with_chain(&demo_manifest(), &chain, &data);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("hello from the demo actor"), "{all}");
    assert!(all.contains("dice:"), "{all}");
    assert!(all.contains("chain head "), "{all}");
    assert!(all.contains("theater:simple/runtime/shutdown"), "{all}");
    // No progress spinner when the output is not a terminal.
    assert!(!all.contains('\r'), "{all}");
    // It shut itself down: nothing else stopped it.
    assert!(!all.contains("no handler holds background work"), "{all}");
    assert!(
        all.contains("actor demo stopped: shut down (demo finished)"),
        "{all}"
    );

    let out = theater(&["chain", "verify", chain.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // The header and the end record around the events.
    let events = std::fs::read_to_string(&chain).unwrap().lines().count() - 2;
    assert!(
        text(&out).contains(&format!("ok, closed, {events} events")),
        "{}",
        text(&out)
    );

    let out = theater(&["chain", "show", chain.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        text(&out).contains("theater:simple/actor/init"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("\"msg\":\"hello from the demo actor"),
        "{}",
        text(&out)
    );
}

#[test]
fn chain_verify_rejects_one_changed_byte_and_names_the_event() {
    let dir = tempfile::tempdir().unwrap();
    let chain = recorded_demo(dir.path());
    // Change one byte of the second event's timestamp (a digit; line 3, after the header), which its hash covers.
    let original = std::fs::read_to_string(&chain).unwrap();
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    let at = lines[2].find("\"timestamp\":").unwrap() + "\"timestamp\":".len() + 3;
    let mut bytes = lines[2].clone().into_bytes();
    bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
    lines[2] = String::from_utf8(bytes).unwrap();
    std::fs::write(&chain, lines.join("\n") + "\n").unwrap();

    let out = theater(&["chain", "verify", chain.to_str().unwrap()]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("chain event 1 (file line 3"), "{msg}");
}

/// Writes a manifest for a test guest into `dir`.
fn manifest(dir: &Path, name: &str, component: &str, init_state: &str, handlers: &str) -> PathBuf {
    let state = dir.join(format!("{name}.state"));
    std::fs::write(&state, init_state).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = {name:?}\ncomponent = {component:?}\ninit_state = {:?}\n{handlers}",
            state.to_str().unwrap()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_failed_init_still_leaves_a_closed_verified_chain() {
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("c.jsonl");
    let m = manifest(
        dir.path(),
        "child",
        theater_tests::guests::SUPERVISOR_CHILD,
        "fail-init",
        "[[handler]]\ntype = \"runtime\"\n",
    );
    let out = run_with_chain(&m, &chain, dir.path());
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("init refused"), "{}", text(&out));
    let out = theater(&["chain", "verify", chain.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("ok, closed, 1 events"),
        "{}",
        text(&out)
    );
    let shown = text(&theater(&["chain", "show", chain.to_str().unwrap()]));
    assert!(
        shown.contains("theater:simple/actor/init") && shown.contains("init refused"),
        "{shown}"
    );
}

#[test]
fn verify_tells_a_cut_or_empty_file_from_a_closed_one() {
    let dir = tempfile::tempdir().unwrap();
    let chain = recorded_demo(dir.path());
    let full = std::fs::read_to_string(&chain).unwrap();
    // `head -n 3`: the header and two events.
    let head3: String = full.split_inclusive('\n').take(3).collect();
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, &head3).unwrap();
    let out = theater(&["chain", "verify", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("CUT: 2 events verify"),
        "{}",
        text(&out)
    );
    // Cut in the middle of a line: the complete lines verify, the partial one is named.
    std::fs::write(&cut, &full[..head3.len() + 30]).unwrap();
    let out = theater(&["chain", "verify", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("line 4 is incomplete"),
        "{}",
        text(&out)
    );
    // Empty.
    std::fs::write(&cut, "").unwrap();
    let out = theater(&["chain", "verify", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("CUT: 0 events"), "{}", text(&out));
    // A line that is not UTF-8 is named.
    let mut bad = full.clone().into_bytes();
    let second = head3.find('\n').unwrap() + 10;
    bad[second] = 0xff;
    std::fs::write(&cut, bad).unwrap();
    let out = theater(&["chain", "verify", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("chain line 2: not UTF-8"),
        "{}",
        text(&out)
    );
}

#[test]
fn after_kill_9_the_chain_file_holds_the_events_recorded_before_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("c.jsonl");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    // 200 host calls, then a long sleep during which the process is killed.
    let script = format!("run:{}sleep:60000", "now;".repeat(200));
    let m = manifest(
        dir.path(),
        "local",
        theater_tests::guests::LOCAL,
        &script,
        &format!(
            "[[handler]]\ntype = \"timing\"\n[[handler]]\ntype = \"environment\"\n\
             [[handler]]\ntype = \"store\"\n[[handler]]\ntype = \"filesystem\"\npath = {:?}\n",
            files.to_str().unwrap()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_theater"))
        .args(["run", m.to_str().unwrap(), "--chain-out"])
        .arg(&chain)
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The 200 events reach the file while the actor still runs (flushed within 50 ms of being recorded), with
    // the sleep's call still open.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let lines = std::fs::read_to_string(&chain)
            .map(|t| t.matches("theater:simple/timing/now").count())
            .unwrap_or(0);
        if lines == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {lines} events on file"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let read = theater_runtime::Chain::open(&chain).unwrap();
    read.chain.verify().unwrap();
    assert_eq!(read.chain.len(), 200);
    assert!(matches!(
        read.ending,
        theater_runtime::chain::Ending::Cut { .. }
    ));
    let out = theater(&["chain", "verify", chain.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn run_rejects_a_manifest_with_an_unknown_field_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.toml");
    std::fs::write(
        &manifest,
        "name = \"x\"\ncomponent = \"x.wasm\"\ncolour = \"red\"\n",
    )
    .unwrap();
    let out = theater(&["run", manifest.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("colour"), "{}", text(&out));
}

#[test]
fn run_rejects_a_bad_handler_field_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("bad.toml");
    let demo = Path::new(theater_tests::guests::DEMO);
    std::fs::write(
        &manifest,
        format!(
            "name = \"x\"\ncomponent = {:?}\n[[handler]]\ntype = \"runtime\"\n[[handler]]\ntype = \"random\"\nsed = 4\n",
            demo
        ),
    )
    .unwrap();
    let out = theater(&["run", manifest.to_str().unwrap()]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("sed") && msg.contains("random"), "{msg}");
}

/// `kill -9` of `theater run`: the processes its actor started die with it (`PR_SET_PDEATHSIG`), rather than
/// running on under init.
#[cfg(target_os = "linux")]
#[test]
fn after_kill_9_the_processes_its_actors_started_die_too() {
    use theater_tests::support::running;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = format!(
        "run:spawn:sh|-c|echo $$ > {0}.tmp && mv {0}.tmp {0} && exec sleep 300",
        pid_file.display()
    );
    let m = manifest(
        dir.path(),
        "process",
        theater_tests::guests::PROCESS_ACTOR,
        &script,
        "[[handler]]\ntype = \"process\"\nallowed_programs = [\"sh\"]\n",
    );
    let mut theater = Command::new(env!("CARGO_BIN_EXE_theater"))
        .args(["run", m.to_str().unwrap(), "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let pid: u32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            break text.trim().parse().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the process never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(running(pid), "the actor's process runs");
    theater.kill().unwrap(); // SIGKILL
    theater.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while running(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let survived = running(pid);
    if survived {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    assert!(!survived, "process {pid} outlived theater");
}

#[test]
fn replay_reproduces_the_demo_and_names_the_event_a_tampered_copy_departs_at() {
    let dir = tempfile::tempdir().unwrap();
    let chain = recorded_demo(dir.path());
    let manifest = demo_manifest();
    let data = dir.path().to_str().unwrap();
    let replay = |chain: &Path| {
        theater(&[
            "replay",
            manifest.to_str().unwrap(),
            chain.to_str().unwrap(),
            "--data-dir",
            data,
        ])
    };
    let out = replay(&chain);
    let recorded = theater_runtime::Chain::load(&chain).unwrap();
    let n = recorded.len();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("faithful, {n} of {n} events reproduced")),
        "{}",
        text(&out)
    );

    // The first die changed and the chain re-hashed, as a careful forger would: the replay feeds the forged
    // roll to the actor, whose log line then differs from the recorded one.
    let mut forged = theater_runtime::Chain::new();
    let mut dice = 0;
    for e in recorded.events() {
        let mut data: serde_json::Value = serde_json::from_slice(&e.data).unwrap();
        if e.event_type == "theater:simple/random/random-range" && dice == 0 {
            dice += 1;
            let roll = data["result"]["Ok"].as_u64().unwrap();
            data["result"]["Ok"] = (roll % 6 + 1).into();
        }
        forged.append(
            &e.event_type,
            serde_json::to_vec(&data).unwrap(),
            e.timestamp,
            None,
        );
    }
    let copy = dir.path().join("forged.chain.jsonl");
    forged.save(&copy).unwrap();
    let out = replay(&copy);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = recorded
        .events()
        .iter()
        .position(|e| e.data_text().contains("dice:"))
        .unwrap();
    assert!(
        text(&out).contains(&format!(
            "DIVERGED at event {log} (theater:simple/runtime/log): value differs at .params.msg"
        )),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains(&format!("{log} of {n} events reproduced before it")));
}

/// The event lines of `theater run`'s summary (`  <index> <hash prefix> <timestamp> <type> <data>`): index and
/// hash prefix.
fn summary_events(stdout: &str) -> Vec<(usize, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let index = words.next()?.parse().ok()?;
            let hash = words.next()?;
            (line.starts_with("  ")
                && hash.len() == 12
                && hash.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| (index, hash.to_owned()))
        })
        .collect()
}

/// A chain much longer than the summary's 20 events, most of it kept only on file (`chain_memory_bytes` of 256):
/// `theater run` prints the count, the last 20 events read back (not the whole chain copied into memory and
/// printed, which ran out of memory on a long-running actor's chain at Ctrl-C), and the head.
#[test]
fn run_prints_only_the_last_20_events_of_a_long_chain() {
    let dir = tempfile::tempdir().unwrap();
    let chain = dir.path().join("c.jsonl");
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let m = manifest(
        dir.path(),
        "local",
        theater_tests::guests::LOCAL,
        &format!("run:{}", ["now"; 150].join(";")),
        &format!(
            "[limits]\nchain_memory_bytes = 256\n\
             [[handler]]\ntype = \"timing\"\n[[handler]]\ntype = \"environment\"\n\
             [[handler]]\ntype = \"store\"\n[[handler]]\ntype = \"filesystem\"\npath = {:?}\n",
            files.to_str().unwrap()
        ),
    );
    let out = run_with_chain(&m, &chain, dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    let recorded = theater_runtime::Chain::load(&chain).unwrap();
    let total = recorded.len();
    assert!(total > 150, "{total} events");
    let shown = summary_events(&stdout);
    let last: Vec<(usize, String)> = recorded.events()[total - 20..]
        .iter()
        .enumerate()
        .map(|(i, e)| (total - 20 + i, hex::encode(e.hash)[..12].to_owned()))
        .collect();
    assert_eq!(shown, last, "{stdout}");
    assert!(
        stdout.contains(&format!("chain: {total} events")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} earlier events not shown", total - 20)),
        "{stdout}"
    );
    let head = hex::encode(recorded.head().unwrap());
    assert!(
        stdout.contains(&format!("chain head {head}; saved to {}", chain.display())),
        "{stdout}"
    );
    assert!(stdout.contains("theater chain verify"), "{stdout}");
}

/// Bytes a terminal would act on: ESC (CSI, OSC) and BEL (ends an OSC), and the 8-bit CSI.
fn assert_no_control_sequences(out: &Output) {
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !bytes.iter().any(|&b| b == 0x1b || b == 0x07) && !text.contains('\u{9b}'),
            "{name} has a raw control character: {text:?}"
        );
    }
}

/// An OSC 52 sequence: a terminal that honours it puts "hacked" on the clipboard.
const HOSTILE: &str = "\u{1b}]52;c;aGFja2Vk\u{7}";

/// A chain file whose event type, note and data hold terminal control sequences, with correct hashes (a forged
/// or hostile file, or data an actor chose): `chain show`, `chain verify` (of a good and of a bad copy, whose error
/// names the event type) and a file that does not parse print them escaped, never raw.
#[test]
fn chain_show_and_verify_print_control_characters_from_the_file_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let mut chain = theater_runtime::Chain::new();
    chain.append(
        HOSTILE,
        // Not JSON, so kept as bytes (`data_base64`): `show` prints it as text, being UTF-8.
        b"\x1b[2J\x1b[31mred\x07\n\xc2\x9b0m".to_vec(),
        1,
        Some(format!("note {HOSTILE}")),
    );
    chain.append(HOSTILE, b"{\"x\":1}".to_vec(), 2, None);
    let good = dir.path().join("good.jsonl");
    chain.save(&good).unwrap();

    let out = theater(&["chain", "show", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_no_control_sequences(&out);
    let shown = text(&out);
    assert!(shown.contains("#0 \\u{1b}]52;c;aGFja2Vk\\u{7}"), "{shown}");
    assert!(shown.contains("note       note \\u{1b}]52"), "{shown}");
    assert!(
        shown.contains("data       \\u{1b}[2J\\u{1b}[31mred\\u{7}\\n\\u{9b}0m"),
        "{shown}"
    );
    assert!(shown.contains("data       {\"x\":1}"), "{shown}");

    let out = theater(&["chain", "verify", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_no_control_sequences(&out);

    // The second event's hash changed: the error names its (hostile) type.
    let mut events = chain.into_events();
    events[1].hash[0] ^= 1;
    let bad = dir.path().join("bad.jsonl");
    theater_runtime::Chain::from(events).save(&bad).unwrap();
    let out = theater(&["chain", "verify", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_no_control_sequences(&out);
    assert!(
        text(&out).contains("chain event 1 (file line 3, \\u{1b}]52;c;aGFja2Vk\\u{7})"),
        "{}",
        text(&out)
    );

    // A line that does not parse, its field named after a control sequence: the error may quote it.
    let unparsed = dir.path().join("unparsed.jsonl");
    std::fs::write(
        &unparsed,
        "{\"theater_chain\":2}\n{\"\\u001b]52;c;aGFja2Vk\\u0007\":1}\n",
    )
    .unwrap();
    for command in ["verify", "show"] {
        let out = theater(&["chain", command, unparsed.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert_no_control_sequences(&out);
    }
}

/// A chain whose event type is a control sequence, re-hashed so that it verifies: `replay` names the event it
/// diverges at, escaped.
#[test]
fn replay_prints_a_hostile_event_type_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let chain = recorded_demo(dir.path());
    let manifest = demo_manifest();
    let recorded = theater_runtime::Chain::load(&chain).unwrap();
    let mut forged = theater_runtime::Chain::new();
    let mut at = None;
    for (i, e) in recorded.events().iter().enumerate() {
        let hostile = at.is_none() && e.event_type == "theater:simple/random/random-range";
        if hostile {
            at = Some(i);
        }
        forged.append(
            if hostile { HOSTILE } else { &e.event_type },
            e.data.clone(),
            e.timestamp,
            None,
        );
    }
    let at = at.unwrap();
    let copy = dir.path().join("forged.chain.jsonl");
    forged.save(&copy).unwrap();
    let out = theater(&[
        "replay",
        manifest.to_str().unwrap(),
        copy.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_no_control_sequences(&out);
    assert!(
        text(&out).contains(&format!(
            "DIVERGED at event {at} (\\u{{1b}}]52;c;aGFja2Vk\\u{{7}})"
        )),
        "{}",
        text(&out)
    );
}
