//! Output modes: how the bytes read from one stream become the payloads of `handle-stdout` / `handle-stderr`.
//!
//! A [`Framer`] is a pure state machine: [`push`](Framer::push) appends what one read returned,
//! [`finish`](Framer::finish) marks the end of file, and [`next_payload`](Framer::next_payload) hands out the
//! payloads now complete, one at a time. Framing is linear in the bytes read: a cursor walks the buffer (lines
//! are found with `memchr`) and the consumed prefix is dropped once per read, so 1 MiB of `\n` costs a
//! few milliseconds, and since payloads are taken one by one, the caller can await each delivery in between
//! instead of framing a whole read at once. It never holds more than one line or chunk (bounded by
//! `max_output_buffer`) plus one read.

/// How one stream is framed (the WIT `output-mode` with its sizes resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Each read as it came (at most the read size).
    Raw,
    /// Each line without its `\n` or `\r\n`; a line longer than the line limit is delivered in pieces of the
    /// limit. With `json`, only lines that parse as JSON are delivered (others are logged and skipped, overlong
    /// ones too).
    Lines {
        /// Keep only lines that parse as JSON.
        json: bool,
    },
    /// Chunks of exactly this many bytes (at least 1); the final partial chunk at end of file.
    Chunks(usize),
}

/// Turns reads into payloads for one stream.
#[derive(Debug)]
pub struct Framer {
    framing: Framing,
    /// The longest line delivered (bytes).
    max_line: usize,
    /// Bytes read and not yet handed out; `pending[start..]` is what is left.
    pending: Vec<u8>,
    /// Where the bytes not yet handed out begin in `pending`.
    start: usize,
    /// How much of `pending[start..]` is known to hold no `\n`.
    scanned: usize,
    /// JSON mode only: the rest of an overlong line is being skipped.
    skipping: bool,
    /// The end of file was seen: what is left is handed out too.
    ended: bool,
}

impl Framer {
    /// A framer for `framing`; lines longer than `max_line` bytes (at least 1) are split (or, in JSON mode,
    /// skipped).
    pub fn new(framing: Framing, max_line: usize) -> Self {
        Self {
            framing,
            max_line: max_line.max(1),
            pending: Vec::new(),
            start: 0,
            scanned: 0,
            skipping: false,
            ended: false,
        }
    }

    /// Appends what one read returned; take the payloads it completes with [`next_payload`](Self::next_payload).
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            // Once per read: drop what was handed out (at most one line or chunk is left).
            self.pending.drain(..self.start);
            self.start = 0;
        }
        self.pending.extend_from_slice(data);
    }

    /// Marks the end of file: [`next_payload`](Self::next_payload) then also hands out the last unterminated line
    /// or the final partial chunk.
    pub fn finish(&mut self) {
        self.ended = true;
    }

    /// The next complete payload, in order; `None` when more input is needed (or, after
    /// [`finish`](Self::finish), when everything was handed out).
    pub fn next_payload(&mut self) -> Option<Vec<u8>> {
        match self.framing {
            Framing::Raw => self.take(self.pending.len() - self.start),
            Framing::Chunks(size) => {
                let left = self.pending.len() - self.start;
                let size = size.max(1);
                if left >= size {
                    self.take(size)
                } else if self.ended {
                    self.take(left)
                } else {
                    None
                }
            }
            Framing::Lines { json } => loop {
                if let Some(line) = self.next_line(json)? {
                    return Some(line);
                }
            },
        }
    }

    /// Hands out the next `n` bytes (`None` if `n` is 0).
    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        if n == 0 {
            return None;
        }
        let out = self.pending[self.start..self.start + n].to_vec();
        self.start += n;
        self.scanned = self.scanned.saturating_sub(n);
        Some(out)
    }

    /// One step of line framing: `None` when more input is needed, `Some(None)` when a line was consumed
    /// without a payload (skipped), `Some(Some(payload))` otherwise.
    fn next_line(&mut self, json: bool) -> Option<Option<Vec<u8>>> {
        let rest = &self.pending[self.start..];
        if rest.is_empty() {
            return None;
        }
        let newline = memchr::memchr(b'\n', &rest[self.scanned..]).map(|i| self.scanned + i);
        let Some(end) = newline else {
            self.scanned = rest.len();
            let body = rest.len() - usize::from(rest.last() == Some(&b'\r'));
            if self.skipping {
                // The rest of an overlong JSON line: dropped as it comes.
                self.start = self.pending.len();
                self.scanned = 0;
                if self.ended {
                    self.skipping = false;
                }
                return None;
            }
            if body > self.max_line {
                // No end of line within the limit: a whole piece (line mode) or skip to the line's end (JSON).
                if json {
                    skip_overlong(rest.len());
                    self.skipping = !self.ended;
                    self.start = self.pending.len();
                    self.scanned = 0;
                    return None;
                }
                return Some(self.take(self.max_line));
            }
            if !self.ended {
                return None;
            }
            // The last, unterminated line.
            let line = strip_cr(rest).to_vec();
            self.start = self.pending.len();
            self.scanned = 0;
            return Some(self.line(json, line));
        };
        if std::mem::take(&mut self.skipping) {
            self.start += end + 1;
            self.scanned = 0;
            return Some(None);
        }
        let line = strip_cr(&rest[..end]);
        if line.len() > self.max_line {
            if json {
                skip_overlong(line.len());
                self.start += end + 1;
                self.scanned = 0;
                return Some(None);
            }
            // A piece of the limit; the rest of the line follows.
            self.scanned = end;
            return Some(self.take(self.max_line));
        }
        let line = line.to_vec();
        self.start += end + 1;
        self.scanned = 0;
        Some(self.line(json, line))
    }

    /// `line` as delivered, or `None` when JSON mode skips it.
    fn line(&self, json: bool, line: Vec<u8>) -> Option<Vec<u8>> {
        if json && serde_json::from_slice::<serde::de::IgnoredAny>(&line).is_err() {
            tracing::debug!(
                bytes = line.len(),
                "process output: skipping a line that is not JSON"
            );
            return None;
        }
        Some(line)
    }
}

fn skip_overlong(bytes: usize) {
    tracing::debug!(
        bytes,
        "process output: skipping a line over max_output_buffer in json mode"
    );
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(framing: Framing, max_line: usize, reads: &[&[u8]]) -> Vec<String> {
        let mut framer = Framer::new(framing, max_line);
        let mut out = Vec::new();
        for read in reads {
            framer.push(read);
            out.extend(std::iter::from_fn(|| framer.next_payload()));
        }
        framer.finish();
        out.extend(std::iter::from_fn(|| framer.next_payload()));
        out.into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect()
    }

    #[test]
    fn raw_delivers_each_read() {
        assert_eq!(run(Framing::Raw, 8, &[b"ab\n", b"", b"c"]), ["ab\n", "c"]);
    }

    #[test]
    fn lines_strip_terminators_across_reads_and_keep_the_last_unterminated_line() {
        let lines = Framing::Lines { json: false };
        assert_eq!(run(lines, 64, &[b"a\nb", b"\r\n\nc"]), ["a", "b", "", "c"]);
        assert_eq!(run(lines, 64, &[b"a\n"]), ["a"]);
        assert_eq!(run(lines, 64, &[b"x\r"]), ["x"]);
    }

    #[test]
    fn overlong_lines_come_in_pieces() {
        let lines = Framing::Lines { json: false };
        assert_eq!(
            run(lines, 4, &[b"abcdefghij\nk"]),
            ["abcd", "efgh", "ij", "k"]
        );
        assert_eq!(
            run(lines, 4, &[b"abc", b"defghi", b"j\n"]),
            ["abcd", "efgh", "ij"]
        );
    }

    #[test]
    fn json_keeps_only_json_lines() {
        let json = Framing::Lines { json: true };
        assert_eq!(
            run(json, 64, &[b"{\"a\":1}\nnot json\n[1,2]\n\n3"]),
            ["{\"a\":1}", "[1,2]", "3"]
        );
        assert_eq!(
            run(json, 8, &[b"{\"long\":", b"\"aaaaaaaa\"}\n{}\n"]),
            ["{}"],
            "an overlong line is skipped whole"
        );
        assert_eq!(
            run(json, 8, &[b"{\"long\":\"aaaa", b"aaaa\"}\n{}"]),
            ["{}"],
            "also when it spans reads"
        );
    }

    #[test]
    fn chunks_are_exact_with_a_final_partial_chunk() {
        assert_eq!(
            run(Framing::Chunks(4), 64, &[b"012", b"3456789"]),
            ["0123", "4567", "89"]
        );
        assert_eq!(run(Framing::Chunks(2), 64, &[b"abcd"]), ["ab", "cd"]);
    }

    #[test]
    fn a_mebibyte_of_newlines_is_a_mebibyte_of_empty_lines() {
        let mut framer = Framer::new(Framing::Lines { json: false }, 1 << 20);
        framer.push(&vec![b'\n'; 1 << 20]);
        let mut count = 0;
        while let Some(line) = framer.next_payload() {
            assert!(line.is_empty(), "line {count}: {line:?}");
            count += 1;
        }
        framer.finish();
        assert_eq!(framer.next_payload(), None);
        assert_eq!(count, 1 << 20);
    }

    #[test]
    fn many_short_lines_across_reads_come_whole_and_in_order() {
        let data: Vec<u8> = (0..100_000)
            .flat_map(|i| format!("line {i}\r\n").into_bytes())
            .collect();
        let mut framer = Framer::new(Framing::Lines { json: false }, 64);
        let mut lines = Vec::new();
        // Reads of an odd size, so lines and `\r\n` span reads.
        for read in data.chunks(4093) {
            framer.push(read);
            lines.extend(std::iter::from_fn(|| framer.next_payload()));
        }
        framer.finish();
        lines.extend(std::iter::from_fn(|| framer.next_payload()));
        assert_eq!(lines.len(), 100_000);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line, format!("line {i}").as_bytes());
        }
    }

    #[test]
    fn a_line_of_exactly_the_limit_waiting_for_its_end_is_not_split() {
        let lines = Framing::Lines { json: false };
        assert_eq!(run(lines, 4, &[b"abcd", b"\n"]), ["abcd"]);
        assert_eq!(run(lines, 4, &[b"abcd\r", b"\ne"]), ["abcd", "e"]);
        assert_eq!(run(lines, 4, &[b"abcdefgh", b"\n"]), ["abcd", "efgh"]);
    }
}
