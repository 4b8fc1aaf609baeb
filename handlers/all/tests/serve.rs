//! `theater serve` and the commands that talk to it, each run as a subprocess against real actors.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A `theater serve` subprocess on a free loopback port; killed if the test ends early.
struct Serve {
    child: Child,
    server: String,
    first_lines: Vec<String>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Serve {
    fn start(data: &Path) -> Self {
        Self::start_with(data, &[])
    }

    fn start_with(data: &Path, more: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_theater"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(more)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run theater serve");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first_lines = Vec::new();
        // "theater serve: listening on http://ADDR (live view: ...)", "data folder: ...", and where the token is
        // (on first start, the token itself).
        for _ in 0..3 {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            first_lines.push(line.trim_end().to_owned());
        }
        let server = first_lines[0]
            .strip_prefix("theater serve: listening on ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("{first_lines:?}"))
            .to_owned();
        Self {
            child,
            server,
            first_lines,
            stdout,
        }
    }

    /// `theater ARGS --server <this server>`.
    fn theater(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_theater"))
            .args(args)
            .args(["--server", &self.server])
            .output()
            .expect("run theater")
    }

    /// SIGTERM, then the rest of its output.
    fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").arg(&pid).status().unwrap().success());
        assert!(self.child.wait().unwrap().success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).unwrap();
        rest
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn all(out: &Output) -> String {
    format!("{}{}", stdout(out), String::from_utf8_lossy(&out.stderr))
}

/// The message-peer guest with runtime and message-server: answers requests with `re:<msg>`.
fn peer_manifest(dir: &Path) -> PathBuf {
    assert!(Path::new(theater_tests::guests::MESSAGE_PEER).exists());
    let path = dir.join("peer.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"peer\"\ncomponent = {:?}\n[[handler]]\ntype = \"runtime\"\n[[handler]]\ntype = \"message-server\"\n",
            theater_tests::guests::MESSAGE_PEER
        ),
    )
    .unwrap();
    path
}

#[test]
fn serve_start_ps_send_request_events_save_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data);
    // First start: the token is generated, printed and kept in the data folder.
    let token = std::fs::read_to_string(data.join("server-token")).unwrap();
    assert!(
        serve.first_lines[2].ends_with(token.trim()),
        "{:?}",
        serve.first_lines
    );

    let manifest = peer_manifest(dir.path());
    let manifest = manifest.to_str().unwrap();
    let out = serve.theater(&["start", manifest]);
    assert!(out.status.success(), "{}", all(&out));
    let a = stdout(&out).trim().to_owned();
    let out = serve.theater(&["start", manifest]);
    let b = stdout(&out).trim().to_owned();
    assert_eq!(a.len(), 36, "an id: {a}");

    let out = serve.theater(&["ps"]);
    let ps = stdout(&out);
    assert!(out.status.success(), "{}", all(&out));
    let lines: Vec<&str> = ps.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "ID", "NAME", "STATUS", "PARENT", "UPTIME", "EVENTS", "MEMORY"
        ]
    );
    for id in [&a, &b] {
        let row = lines.iter().find(|l| l.starts_with(id.as_str())).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[1..4], ["peer", "Idle", "-"], "{row}");
        assert_eq!(cells[5], "1", "init only: {row}");
    }

    // Follow a's events in the background: it ends by itself when a stops. Its first line (init) shows it is
    // connected.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_theater"))
        .args(["events", &a, "--follow", "--server", &serve.server])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut followed = BufReader::new(follow.stdout.take().unwrap());
    let mut first = String::new();
    followed.read_line(&mut first).unwrap();
    assert!(first.contains("theater:simple/actor/init"), "{first}");

    let out = serve.theater(&["send", &a, "hello"]);
    assert!(out.status.success(), "{}", all(&out));
    let out = serve.theater(&["request", &a, "ping"]);
    assert_eq!(stdout(&out), "re:ping\n", "{}", all(&out));
    // Hex and files.
    let out = serve.theater(&["request", &a, "0x6869"]);
    assert_eq!(stdout(&out), "re:hi\n", "{}", all(&out));
    std::fs::write(dir.path().join("msg"), "from a file").unwrap();
    let at_file = format!("@{}", dir.path().join("msg").display());
    let out = serve.theater(&["request", &a, &at_file]);
    assert_eq!(stdout(&out), "re:from a file\n", "{}", all(&out));

    let out = serve.theater(&["events", &a]);
    let events = stdout(&out);
    let lines: Vec<&str> = events.lines().collect();
    assert_eq!(lines.len(), 5, "{events}");
    assert!(lines[0].contains("theater:simple/actor/init"), "{events}");
    assert!(
        lines[1].contains("handle-send") && lines[1].contains("aGVsbG8="),
        "{events}"
    );

    let saved = dir.path().join("a.chain.jsonl");
    let out = serve.theater(&["chain", "save", &a, saved.to_str().unwrap()]);
    assert!(out.status.success(), "{}", all(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_theater"))
        .args(["chain", "verify", saved.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("ok, closed, 5 events"),
        "{}",
        all(&out)
    );

    let out = serve.theater(&["stop", &a]);
    assert_eq!(
        stdout(&out),
        format!("actor {a}: stopped\n"),
        "{}",
        all(&out)
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut followed, &mut rest).unwrap();
    assert!(follow.wait().unwrap().success());
    // The same lines as `events`, then the end.
    assert_eq!(first + &rest, format!("{events}actor {a} stopped\n"));

    let out = serve.theater(&["ps"]);
    assert!(!stdout(&out).contains(&a) && stdout(&out).contains(&b));

    let rest = serve.terminate();
    assert!(rest.contains("theater serve: stopped"), "{rest}");
}

#[test]
fn errors_name_the_actor_and_the_cause_with_documented_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"));
    let unknown = "00000000-0000-4000-8000-000000000000";
    for args in [
        vec!["stop", unknown],
        vec!["send", unknown, "x"],
        vec!["events", unknown],
    ] {
        let out = serve.theater(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", all(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("actor {unknown} not found")), "{err}");
    }
    let out = serve.theater(&["start", "/does/not/exist.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(all(&out).contains("/does/not/exist.toml"), "{}", all(&out));
    let out = serve.theater(&["send", unknown, "0xnothex"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(all(&out).contains("not hex"), "{}", all(&out));
    drop(serve);

    // Nothing listens there any more.
    let out = Command::new(env!("CARGO_BIN_EXE_theater"))
        .args(["ps", "--server", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", all(&out));
    assert!(
        all(&out).contains("cannot reach the server"),
        "{}",
        all(&out)
    );

    let help = Command::new(env!("CARGO_BIN_EXE_theater"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(stdout(&help).contains("Exit codes:"), "{}", stdout(&help));
}

#[test]
fn the_token_is_printed_once_and_can_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Serve::start(&data);
    let token = std::fs::read_to_string(data.join("server-token")).unwrap();
    assert!(first.first_lines[2].contains(token.trim()));
    drop(first);
    // The second start keeps the token and does not print it.
    let again = Serve::start(&data);
    assert!(
        again.first_lines[2].ends_with(&format!("in {}", data.join("server-token").display())),
        "{:?}",
        again.first_lines
    );
    assert!(!again.first_lines.concat().contains(token.trim()));
    assert_eq!(
        std::fs::read_to_string(data.join("server-token")).unwrap(),
        token
    );
    drop(again);
    // A token file of one's own: nothing is made in the data folder.
    let own = dir.path().join("token.conf");
    std::fs::write(&own, "my-own-token\n").unwrap();
    let other = dir.path().join("other");
    let serve = Serve::start_with(&other, &["--token-file", own.to_str().unwrap()]);
    assert!(
        serve.first_lines[2].ends_with(own.to_str().unwrap()),
        "{:?}",
        serve.first_lines
    );
    assert!(!other.join("server-token").exists());
}
