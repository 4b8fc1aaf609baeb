//! Output modes: how the bytes read from one stream become the payloads of `handle-stdout` / `handle-stderr`.
//!
//! A [`Framer`] is a pure state machine: [`push`](Framer::push) takes what one read returned and gives the
//! payloads now complete, [`finish`](Framer::finish) gives what is left at end of file. It never holds more
//! than one line or chunk (bounded by `max_output_buffer`) plus one read.

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
    /// Bytes of an incomplete line or chunk.
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no `\n`.
    scanned: usize,
    /// JSON mode only: the rest of an overlong line is being skipped.
    skipping: bool,
}

impl Framer {
    /// A framer for `framing`; lines longer than `max_line` bytes (at least 1) are split (or, in JSON mode,
    /// skipped).
    pub fn new(framing: Framing, max_line: usize) -> Self {
        Self {
            framing,
            max_line: max_line.max(1),
            pending: Vec::new(),
            scanned: 0,
            skipping: false,
        }
    }

    /// The payloads completed by `data`, in order.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if data.is_empty() {
            return out;
        }
        match self.framing {
            Framing::Raw => out.push(data.to_vec()),
            Framing::Chunks(size) => {
                let size = size.max(1);
                self.pending.extend_from_slice(data);
                if self.pending.len() >= size {
                    let whole = self.pending.len() - self.pending.len() % size;
                    let rest = self.pending.split_off(whole);
                    out.extend(self.pending.chunks(size).map(<[u8]>::to_vec));
                    self.pending = rest;
                }
            }
            Framing::Lines { json } => {
                self.pending.extend_from_slice(data);
                self.lines(json, &mut out);
            }
        }
        out
    }

    /// What is left at end of file: the last unterminated line or the final partial chunk.
    pub fn finish(&mut self) -> Vec<Vec<u8>> {
        let rest = std::mem::take(&mut self.pending);
        self.scanned = 0;
        let skipping = std::mem::take(&mut self.skipping);
        if rest.is_empty() {
            return Vec::new();
        }
        match self.framing {
            Framing::Raw => vec![rest],
            Framing::Chunks(_) => vec![rest],
            Framing::Lines { json } => {
                if skipping {
                    return Vec::new();
                }
                self.line(json, strip_cr(rest)).into_iter().collect()
            }
        }
    }

    /// Moves the complete lines (and overlong pieces) of `pending` to `out`.
    fn lines(&mut self, json: bool, out: &mut Vec<Vec<u8>>) {
        while let Some(i) = self.pending[self.scanned..]
            .iter()
            .position(|&b| b == b'\n')
        {
            let end = self.scanned + i;
            let rest = self.pending.split_off(end + 1);
            let mut line = std::mem::replace(&mut self.pending, rest);
            line.truncate(end);
            self.scanned = 0;
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            let line = strip_cr(line);
            if line.len() <= self.max_line {
                out.extend(self.line(json, line));
            } else if json {
                skip_overlong(line.len());
            } else {
                out.extend(line.chunks(self.max_line).map(<[u8]>::to_vec));
            }
        }
        self.scanned = self.pending.len();
        if self.pending.len() > self.max_line {
            // No end of line within the limit: deliver whole pieces (line mode) or skip to the line's end (JSON).
            if json {
                if !self.skipping {
                    skip_overlong(self.pending.len());
                }
                self.pending.clear();
                self.skipping = true;
            } else {
                let whole = self.pending.len() - self.pending.len() % self.max_line;
                let rest = self.pending.split_off(whole);
                out.extend(self.pending.chunks(self.max_line).map(<[u8]>::to_vec));
                self.pending = rest;
            }
            self.scanned = self.pending.len();
        }
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

fn strip_cr(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(framing: Framing, max_line: usize, reads: &[&[u8]]) -> Vec<String> {
        let mut framer = Framer::new(framing, max_line);
        let mut out: Vec<Vec<u8>> = reads.iter().flat_map(|r| framer.push(r)).collect();
        out.extend(framer.finish());
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
}
