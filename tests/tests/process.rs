//! End-to-end tests of `theater:simple/process` and `theater:simple/process-handlers` (handlers.md §8) from the
//! `process-actor` guest, with real subprocesses (`sh`, `cat`, `sleep`, `printf`). The guest appends every
//! callback to its state; the tests wait (generously) for the lines they expect.

use std::sync::Arc;
use std::time::Duration;

use theater_handler_process::{ProcessHandler, ProcessHandlerConfig, STDIN_WRITE_OVERHEAD};
use theater_runtime::{ActorHandle, TheaterRuntime};
use theater_tests::guests;
use theater_tests::probe::ProbeHandler;
use theater_tests::support::{DEEP_TREE_PERL, events_of, runtime, script_lines as run, spawn};

/// The programs the tests may run.
fn allowed() -> ProcessHandlerConfig {
    ProcessHandlerConfig {
        allowed_programs: ["sh", "cat", "sleep", "printf"].map(String::from).to_vec(),
        ..Default::default()
    }
}

async fn actor(
    rt: &TheaterRuntime,
    config: ProcessHandlerConfig,
    init: Option<&str>,
) -> ActorHandle {
    let handlers: Vec<Arc<dyn theater_runtime::Handler>> = vec![
        Arc::new(ProcessHandler::new(config)),
        Arc::new(ProbeHandler::new()),
    ];
    let init = init.map(|s| format!("run:{s}").into_bytes());
    spawn(rt, "process", guests::PROCESS_ACTOR, handlers, init)
        .await
        .unwrap()
}

/// The guest's log of callbacks (its state), one entry per line.
fn log(actor: &ActorHandle) -> Vec<String> {
    String::from_utf8(actor.state().unwrap_or_default())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits (up to 20 s) until the log satisfies `done`, and returns it.
async fn wait_log(actor: &ActorHandle, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    for _ in 0..1000 {
        let log = log(actor);
        if done(&log) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the log never got there: {:#?}", log(actor));
}

/// Waits until the log has the exit of every one of `pids`.
async fn wait_exits(actor: &ActorHandle, pids: &[u64]) -> Vec<String> {
    wait_log(actor, |log| {
        pids.iter()
            .all(|p| log.iter().any(|l| l.starts_with(&format!("exit:{p}:"))))
    })
    .await
}

/// The log lines of process `pid`.
fn of(log: &[String], pid: u64) -> Vec<String> {
    log.iter()
        .filter(|l| {
            let mut parts = l.splitn(3, ':');
            parts.next();
            parts.next() == Some(pid.to_string().as_str())
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn process_line_mode_output_then_exit_on_the_chain() {
    let (rt, _dir) = runtime();
    let a = actor(&rt, allowed(), None).await;
    assert_eq!(run(&a, "spawn:sh|-c|echo hello").await, ["spawn=1"]);
    let log = wait_exits(&a, &[1]).await;
    assert_eq!(log, ["stdout:1:\"hello\"", "exit:1:0 status=false,0"]);

    assert_eq!(
        run(&a, "spawn:sh|-c|echo err >&2; exit 3").await,
        ["spawn=2"]
    );
    let log = wait_exits(&a, &[2]).await;
    assert_eq!(of(&log, 2), ["stderr:2:\"err\"", "exit:2:3 status=false,3"]);

    let chain = a.chain();
    chain.verify().unwrap();
    let spawns = events_of(&chain, "theater:simple/process/os-spawn");
    assert_eq!(spawns.len(), 2);
    assert_eq!(
        events_of(&chain, "theater:simple/process-handlers/handle-stdout").len(),
        1
    );
    assert_eq!(
        events_of(&chain, "theater:simple/process-handlers/handle-stderr").len(),
        1
    );
    assert_eq!(
        events_of(&chain, "theater:simple/process-handlers/handle-exit").len(),
        2
    );
    assert_eq!(
        events_of(&chain, "theater:simple/process/os-status").len(),
        2,
        "the guest's os-status calls inside handle-exit"
    );
}

#[tokio::test]
async fn process_stdin_and_status_before_and_after_exit() {
    let (rt, _dir) = runtime();
    let a = actor(&rt, allowed(), None).await;
    let before = now_ms();
    let out = run(&a, "spawn:cat\nstatus:1\nwrite:1,hello\nclose:1").await;
    assert_eq!(out[0], "spawn=1");
    let status: Vec<&str> = out[1].strip_prefix("status=").unwrap().split(',').collect();
    assert_eq!(&status[..3], ["1", "true", "none"]);
    let start: u64 = status[3].parse().unwrap();
    assert!(
        start >= before.saturating_sub(1000) && start <= now_ms() + 1000,
        "{start}"
    );
    assert_eq!(&out[2..], ["write=5", "close=0"]);
    let log = wait_exits(&a, &[1]).await;
    assert_eq!(log, ["stdout:1:\"hello\"", "exit:1:0 status=false,0"]);
    assert_eq!(
        run(&a, "status:1\nwrite:1,again\nclose:1\nstatus:9").await,
        [
            format!("status=1,false,0,{start}"),
            "write!process 1 has already exited".to_owned(),
            "close!process 1 has already exited".to_owned(),
            "status!process 9 not found".to_owned(),
        ]
    );

    // Closed stdin while the process still runs.
    assert_eq!(
        run(&a, "spawn:sleep|30\nclose:2\nwrite:2,x\nclose:2\nkill:2").await,
        [
            "spawn=2",
            "close=0",
            "write!process 2: stdin is closed",
            "close!process 2: stdin is closed",
            "kill"
        ]
    );
}

#[tokio::test]
async fn process_signal_kill_and_execution_timeout() {
    let (rt, _dir) = runtime();
    let a = actor(&rt, allowed(), None).await;
    assert_eq!(
        run(
            &a,
            "spawn:sleep|30\nspawn:sleep|30\nsignal:1,15\nkill:2\nstatus:2"
        )
        .await[..4],
        ["spawn=1", "spawn=2", "signal", "kill"]
    );
    let log = wait_exits(&a, &[1, 2]).await;
    assert!(
        log.contains(&"exit:1:-15 status=false,-15".to_owned()),
        "{log:?}"
    );
    assert!(
        log.contains(&"exit:2:-9 status=false,-9".to_owned()),
        "{log:?}"
    );
    assert_eq!(
        run(&a, "kill:2\nsignal:1,15\nsignal:7,15\nkill:7").await,
        [
            "kill!process 2 has already exited",
            "signal!process 1 has already exited",
            "signal!process 7 not found",
            "kill!process 7 not found"
        ]
    );
    assert_eq!(
        run(
            &a,
            "spawn:sleep|30\nsignal:3,0\nsignal:3,4294967295\nkill:3"
        )
        .await,
        [
            "spawn=3",
            "signal!os-signal: 0 is not a signal",
            "signal!os-signal: 4294967295 is not a signal",
            "kill"
        ]
    );

    let started = std::time::Instant::now();
    assert_eq!(run(&a, "spawn:sleep|30|@timeout=200").await, ["spawn=4"]);
    let log = wait_exits(&a, &[4]).await;
    assert_eq!(of(&log, 4), ["exit:4:-9 status=false,-9"]);
    assert_eq!(
        run(&a, "spawn:sh|-c|exit 0|@timeout=18446744073709551615").await,
        ["spawn=5"],
        "the longest timeout is no timeout"
    );
    let log = wait_exits(&a, &[5]).await;
    assert_eq!(of(&log, 5), ["exit:5:0 status=false,0"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the timeout killed it"
    );
}

#[tokio::test]
async fn process_output_modes() {
    let (rt, _dir) = runtime();
    let a = actor(&rt, allowed(), None).await;
    let out = run(
        &a,
        "spawn:printf|a\\nb\\nc\n\
         spawn:printf|{\"a\":1}\\nnot json\\n[2]\\n|@out=json\n\
         spawn:printf|0123456789|@out=chunked|@chunk=4\n\
         spawn:printf|abc|@out=raw\n\
         spawn:sh|-c|printf xyzw12 >&2|@err=chunked|@chunk=2\n\
         spawn:printf|0123456789|@out=chunked|@buf=3",
    )
    .await;
    assert_eq!(
        out,
        [
            "spawn=1", "spawn=2", "spawn=3", "spawn=4", "spawn=5", "spawn=6"
        ]
    );
    let log = wait_exits(&a, &[1, 2, 3, 4, 5, 6]).await;
    let exit = |p: u64| format!("exit:{p}:0 status=false,0");
    assert_eq!(
        of(&log, 1),
        [
            "stdout:1:\"a\"".to_owned(),
            "stdout:1:\"b\"".into(),
            "stdout:1:\"c\"".into(),
            exit(1)
        ]
    );
    assert_eq!(
        of(&log, 2),
        [
            "stdout:2:\"{\\\"a\\\":1}\"".to_owned(),
            "stdout:2:\"[2]\"".into(),
            exit(2)
        ]
    );
    assert_eq!(
        of(&log, 3),
        [
            "stdout:3:\"0123\"".to_owned(),
            "stdout:3:\"4567\"".into(),
            "stdout:3:\"89\"".into(),
            exit(3)
        ]
    );
    assert_eq!(of(&log, 4), ["stdout:4:\"abc\"".to_owned(), exit(4)]);
    assert_eq!(
        of(&log, 5),
        [
            "stderr:5:\"xy\"".to_owned(),
            "stderr:5:\"zw\"".into(),
            "stderr:5:\"12\"".into(),
            exit(5)
        ]
    );
    assert_eq!(
        of(&log, 6),
        [
            "stdout:6:\"012\"".to_owned(),
            "stdout:6:\"345\"".into(),
            "stdout:6:\"678\"".into(),
            "stdout:6:\"9\"".into(),
            exit(6)
        ],
        "chunk-size defaults to buffer-size"
    );
}

#[tokio::test]
async fn process_denials_and_grants() {
    let (rt, data) = runtime();
    let allowed_dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(allowed_dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.path(), allowed_dir.path().join("escape")).unwrap();
    let config = ProcessHandlerConfig {
        allowed_paths: vec![allowed_dir.path().to_owned()],
        allowed_env: vec!["GREETING".into()],
        ..allowed()
    };
    let a = actor(&rt, config, None).await;
    let inside = allowed_dir.path().join("sub");
    let escape = allowed_dir.path().join("escape");
    let out = run(
        &a,
        &format!(
            "spawn:echo|hi\n\
             spawn:./sh\n\
             spawn:sh|@cwd={outside}\n\
             spawn:sh|@cwd={escape}\n\
             spawn:sh|@cwd=sub\n\
             spawn:sh|@env=LD_PRELOAD=/x.so\n\
             spawn:sh|@buf=2000000\n\
             spawn:sh|@out=chunked|@chunk=2000000\n\
             spawn:sh|@out=chunked|@chunk=0",
            outside = outside.path().display(),
            escape = escape.display(),
        ),
    )
    .await;
    assert_eq!(
        out,
        [
            "spawn!permission denied: run echo (allowed_programs)".to_owned(),
            "spawn!permission denied: run ./sh (allowed_programs)".into(),
            format!(
                "spawn!permission denied: cwd {} (allowed_paths)",
                outside.path().display()
            ),
            format!(
                "spawn!permission denied: cwd {} (allowed_paths)",
                escape.display()
            ),
            "spawn!permission denied: cwd sub (allowed_paths)".into(),
            "spawn!permission denied: env LD_PRELOAD (allowed_env)".into(),
            "spawn!os-spawn: 2000000 exceeds max_output_buffer (1048576)".into(),
            "spawn!os-spawn: 2000000 exceeds max_output_buffer (1048576)".into(),
            "spawn!os-spawn: chunk-size must be at least 1".into(),
        ]
    );

    // What is granted: a cwd inside allowed_paths, an allowed variable; otherwise only PATH is set, and
    // without a cwd the process runs in a private empty directory.
    let out = run(
        &a,
        &format!(
            "spawn:sh|-c|pwd; echo $GREETING|@cwd={inside}|@env=GREETING=hi\n\
             spawn:sh|-c|ls -A; pwd; echo ${{HOME:-no-home}}",
            inside = inside.display()
        ),
    )
    .await;
    assert_eq!(out, ["spawn=1", "spawn=2"]);
    let log = wait_exits(&a, &[1, 2]).await;
    let canonical = inside.canonicalize().unwrap();
    assert_eq!(
        of(&log, 1)[..2],
        [
            format!("stdout:1:{:?}", canonical.display().to_string()),
            "stdout:1:\"hi\"".to_owned()
        ]
    );
    let private = data
        .path()
        .canonicalize()
        .unwrap()
        .join("process")
        .join(a.id().as_str());
    assert_eq!(
        of(&log, 2),
        [
            format!("stdout:2:{:?}", private.display().to_string()),
            "stdout:2:\"no-home\"".to_owned(),
            "exit:2:0 status=false,0".to_owned()
        ],
        "an empty private directory, no HOME"
    );
    assert!(
        events_of(&a.chain(), "theater:simple/process/os-spawn")
            .iter()
            .filter(|e| e.to_string().contains("permission denied"))
            .count()
            >= 5,
        "denials are results on the chain"
    );
    a.stop().await.unwrap();
    for _ in 0..250 {
        if !private.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !private.exists(),
        "the private directory goes with its actor"
    );
}

const TOO_MANY: &str =
    "spawn!os-spawn: 3 exceeds max_processes (2) (processes running or delivering their output)";

#[tokio::test]
async fn process_max_processes_counts_live_processes() {
    let (rt, _dir) = runtime();
    let config = ProcessHandlerConfig {
        max_processes: 2,
        ..allowed()
    };
    let a = actor(&rt, config, None).await;
    assert_eq!(
        run(&a, "spawn:sleep|30\nspawn:sleep|30\nspawn:sleep|30\nkill:1").await,
        ["spawn=1", "spawn=2", TOO_MANY, "kill"]
    );
    // A killed process counts until its task has read its pipes to the end, which its delivered exit follows.
    wait_exits(&a, &[1]).await;
    assert_eq!(
        run(&a, "spawn:sleep|30\nspawn:sleep|30").await,
        ["spawn=3", TOO_MANY]
    );
    assert_eq!(run(&a, "kill:2\nkill:3").await, ["kill", "kill"]);
    wait_exits(&a, &[1, 2, 3]).await;
    assert_eq!(run(&a, "spawn:sh|-c|exit 0").await, ["spawn=4"]);
}

/// A process that has exited still counts toward `max_processes` while its output waits for the actor: its task
/// holds its pipes until the output has been delivered. Otherwise a guest that spawns short commands within one
/// long call (so no output can be delivered before it returns, each delivery waiting up to
/// `callback_timeout_ms`) would pile up pipes and tasks without bound, and the runtime would run out of file
/// descriptors.
#[tokio::test]
async fn process_max_processes_counts_exited_processes_until_their_output_is_delivered() {
    let (rt, _dir) = runtime();
    let config = ProcessHandlerConfig {
        max_processes: 2,
        ..allowed()
    };
    let a = actor(&rt, config, None).await;
    assert_eq!(
        run(
            &a,
            "spawn:sh|-c|echo one\nwait:1\nspawn:sh|-c|echo two\nwait:2\nspawn:sh|-c|echo three"
        )
        .await[..5],
        ["spawn=1", "wait=0", "spawn=2", "wait=0", TOO_MANY],
        "both have exited, but neither's output could be delivered yet"
    );
    let log = wait_exits(&a, &[1, 2]).await;
    assert_eq!(of(&log, 1), ["stdout:1:\"one\"", "exit:1:0 status=false,0"]);
    assert_eq!(of(&log, 2), ["stdout:2:\"two\"", "exit:2:0 status=false,0"]);
    // Their output delivered, they no longer count.
    assert_eq!(
        run(&a, "spawn:sh|-c|echo three\nwait:3\nspawn:sh|-c|echo four").await,
        ["spawn=3", "wait=0", "spawn=4"]
    );
    let log = wait_exits(&a, &[3, 4]).await;
    assert_eq!(
        of(&log, 4),
        ["stdout:4:\"four\"", "exit:4:0 status=false,0"]
    );
}

#[tokio::test]
async fn process_two_actors_see_only_their_own_processes() {
    let (rt, _dir) = runtime();
    let a = actor(&rt, allowed(), None).await;
    let b = actor(&rt, allowed(), None).await;
    assert_eq!(
        run(&a, "spawn:cat\nspawn:sh|-c|echo a-only").await,
        ["spawn=1", "spawn=2"]
    );
    assert_eq!(
        run(
            &b,
            "status:1\nkill:1\nwrite:1,from-b\nclose:1\nsignal:1,9\nstatus:2"
        )
        .await,
        [
            "status!process 1 not found",
            "kill!process 1 not found",
            "write!process 1 not found",
            "close!process 1 not found",
            "signal!process 1 not found",
            "status!process 2 not found",
        ]
    );
    assert_eq!(run(&b, "spawn:sh|-c|echo b-only").await, ["spawn=1"]);
    let b_log = wait_exits(&b, &[1]).await;
    assert_eq!(b_log, ["stdout:1:\"b-only\"", "exit:1:0 status=false,0"]);
    wait_exits(&a, &[2]).await;

    // A's cat is untouched by B, and its output reaches A only.
    assert!(run(&a, "status:1").await[0].starts_with("status=1,true,none,"));
    assert_eq!(
        run(&a, "write:1,for-a\nclose:1").await,
        ["write=5", "close=0"]
    );
    let a_log = wait_exits(&a, &[1, 2]).await;
    assert_eq!(
        of(&a_log, 1),
        ["stdout:1:\"for-a\"", "exit:1:0 status=false,0"]
    );
    assert_eq!(
        of(&a_log, 2),
        ["stdout:2:\"a-only\"", "exit:2:0 status=false,0"]
    );
    assert_eq!(log(&b), b_log, "nothing of A's reached B");
    assert!(!a_log.iter().any(|l| l.contains("b-only")));
}

#[tokio::test]
async fn process_init_may_spawn_and_stopping_kills_children() {
    let (rt, _dir) = runtime();
    let a = actor(&rt, allowed(), Some("spawn:sh|-c|echo $$; sleep 30")).await;
    let log = wait_log(&a, |l| l.len() >= 2).await;
    assert_eq!(log[0], "spawn=1", "init spawned it");
    let child = os_pid(&log[1], 1);
    assert!(alive(child), "the child runs");
    assert!(a.has_background_work(), "a live process is background work");
    a.stop().await.unwrap();
    wait_gone(child).await;
}

#[tokio::test]
async fn process_leaves_nothing_running_behind() {
    let (rt, _dir) = runtime();
    let a = actor(&rt, allowed(), None).await;
    // A background job of an exited process is killed with it, so its pipes close and the exit arrives.
    assert_eq!(run(&a, "spawn:sh|-c|sleep 30 & echo $!").await, ["spawn=1"]);
    let log = wait_exits(&a, &[1]).await;
    let background = os_pid(&log[0], 1);
    wait_gone(background).await;

    // A process started by a script (after `init`) is killed when the actor stops.
    assert_eq!(run(&a, "spawn:sh|-c|echo $$; sleep 30").await, ["spawn=2"]);
    let log = wait_log(&a, |l| l.iter().any(|l| l.starts_with("stdout:2:"))).await;
    let child = os_pid(&log[2], 2);
    assert!(alive(child), "the child runs");
    a.stop().await.unwrap();
    wait_gone(child).await;
}

/// A process can build a tree in the actor's private directory deeper than any path (20,000 levels), which a
/// recursive removal cannot remove (`std::fs::remove_dir_all` overflows its thread's stack and aborts the whole
/// runtime): the directory is removed all the same when the actor stops.
#[tokio::test]
async fn process_a_private_directory_deeper_than_any_path_is_removed() {
    let (rt, data) = runtime();
    let config = ProcessHandlerConfig {
        allowed_programs: vec!["perl".to_owned()],
        ..Default::default()
    };
    let a = actor(&rt, config, None).await;
    let deep = format!("spawn:perl|-e|{DEEP_TREE_PERL}");
    assert_eq!(run(&a, &deep).await, ["spawn=1"]);
    let log = wait_exits(&a, &[1]).await;
    assert!(
        of(&log, 1).iter().any(|l| l.starts_with("exit:1:0 ")),
        "{log:#?}"
    );
    let private = data.path().join("process").join(a.id().as_str());
    assert!(private.join("a/a/a").is_dir());
    a.stop().await.unwrap();
    drop(a);
    for _ in 0..500 {
        if !private.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} was not removed", private.display());
}

#[tokio::test]
async fn process_background_work_lasts_while_processes_do() {
    let (rt, _dir) = runtime();
    // What `theater run` waits on: with `init`'s process gone and its exit delivered, nothing can call the actor.
    let a = actor(&rt, allowed(), Some("spawn:sh|-c|sleep 0.3; echo done")).await;
    assert!(a.has_background_work(), "a live process is background work");
    let log = wait_exits(&a, &[1]).await;
    assert_eq!(log[1..], ["stdout:1:\"done\"", "exit:1:0 status=false,0"]);
    for _ in 0..500 {
        if !a.has_background_work() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!a.has_background_work(), "no process, no background work");

    let idle = actor(&rt, allowed(), None).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !idle.has_background_work(),
        "an actor without processes holds none"
    );
}

#[tokio::test]
async fn process_spawned_after_start_is_background_work_and_reaped_by_stop() {
    let (rt, _dir) = runtime();
    let a = actor(&rt, allowed(), None).await;
    // Long enough for any `start` task of the handler to have ended: an actor without processes is idle.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!a.has_background_work(), "no process, no background work");

    assert_eq!(
        run(&a, "spawn:sh|-c|sleep 0.3; echo done").await,
        ["spawn=1"]
    );
    assert!(
        a.has_background_work(),
        "a process spawned by a later call is background work"
    );
    let log = wait_exits(&a, &[1]).await;
    assert_eq!(log, ["stdout:1:\"done\"", "exit:1:0 status=false,0"]);
    for _ in 0..500 {
        if !a.has_background_work() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !a.has_background_work(),
        "its exit delivered, the actor is idle again"
    );

    // Stopping waits until the child has been killed and reaped: its pid is gone, not even a zombie.
    assert_eq!(run(&a, "spawn:sh|-c|echo $$; sleep 30").await, ["spawn=2"]);
    let log = wait_log(&a, |l| l.iter().any(|l| l.starts_with("stdout:2:"))).await;
    let child = os_pid(&log[2], 2);
    assert!(alive(child), "the child runs");
    assert!(a.has_background_work());
    a.stop().await.unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{child}")).exists(),
        "the child was reaped before stop returned"
    );
    assert!(!a.has_background_work());
}

#[tokio::test]
async fn process_a_large_write_to_cat_comes_back_whole_and_in_order() {
    let (rt, _dir) = runtime();
    // One write of 1 MiB: the queue's bound counts its bytes and the write's overhead.
    let config = ProcessHandlerConfig {
        max_stdin_buffer: (1024 * 1024 + STDIN_WRITE_OVERHEAD) as u32,
        ..allowed()
    };
    let a = actor(&rt, config, None).await;
    // 1 MiB in 64 lines of 16 KiB (newline included): far more than the two pipes hold, so `cat` blocks on its
    // output until the guest's call has returned and the output callbacks run.
    const LINES: usize = 64;
    const LINE: usize = 16 * 1024;
    let lines: Vec<String> = (0..LINES)
        .map(|i| format!("{i:05}{}", "x".repeat(LINE - 6)))
        .collect();
    let data = lines.join("\\n") + "\\n";
    let started = std::time::Instant::now();
    assert_eq!(
        run(&a, &format!("spawn:cat\nwrite:1,{data}\nclose:1")).await,
        ["spawn=1", "write=1048576", "close=0"]
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the write did not wait for cat"
    );
    let log = wait_exits(&a, &[1]).await;
    let mut expected: Vec<String> = lines.iter().map(|l| format!("stdout:1:{l:?}")).collect();
    expected.push("exit:1:0 status=false,0".to_owned());
    assert!(
        log == expected,
        "{} lines, the first ones: {:?}",
        log.len(),
        log.iter()
            .map(|l| l.chars().take(20).collect::<String>())
            .collect::<Vec<_>>()
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "no stall until callback_timeout_ms"
    );

    // What may be queued and not yet written is bounded: here one write of 8 bytes.
    let config = ProcessHandlerConfig {
        max_stdin_buffer: (8 + STDIN_WRITE_OVERHEAD) as u32,
        ..allowed()
    };
    let b = actor(&rt, config, None).await;
    assert_eq!(
        run(
            &b,
            "spawn:cat\nwrite:1,123456789\nwrite:1,12345678\nclose:1"
        )
        .await,
        [
            "spawn=1",
            "write!os-write-stdin: 73 exceeds max_stdin_buffer (72) (bytes queued, 64 more per write)",
            "write=8",
            "close=0"
        ]
    );
    let log = wait_exits(&b, &[1]).await;
    assert_eq!(log, ["stdout:1:\"12345678\"", "exit:1:0 status=false,0"]);
}

/// Each queued `os-write-stdin` counts its bytes and `STDIN_WRITE_OVERHEAD` against `max_stdin_buffer`: 1-byte
/// writes to a process that never reads its stdin fill the bound after `room / (1 + overhead)` of them (each
/// costs the host a buffer and a queue slot), not after `room`. The first write is larger than a pipe holds, so
/// the process's stdin writer blocks on it and nothing queued after it is written (and uncounted) meanwhile.
#[tokio::test]
async fn process_stdin_writes_count_their_overhead() {
    const FILL: usize = 70_000;
    const ROOM: usize = 1000;
    let bound = FILL + STDIN_WRITE_OVERHEAD + ROOM;
    let (rt, _dir) = runtime();
    let config = ProcessHandlerConfig {
        max_stdin_buffer: bound as u32,
        ..allowed()
    };
    let a = actor(&rt, config, None).await;
    let writes = 2 * ROOM / (1 + STDIN_WRITE_OVERHEAD);
    let script = [
        "spawn:sleep|30".to_owned(),
        format!("write:1,{}", "x".repeat(FILL)),
    ]
    .into_iter()
    .chain((0..writes).map(|_| "write:1,x".to_owned()))
    .chain(["kill:1".to_owned()])
    .collect::<Vec<_>>()
    .join("\n");
    let out = run(&a, &script).await;
    assert_eq!(out[..2], ["spawn=1".to_owned(), format!("write={FILL}")]);
    assert_eq!(out[out.len() - 1], "kill");
    let fitted = ROOM / (1 + STDIN_WRITE_OVERHEAD);
    let writes = &out[2..out.len() - 1];
    assert!(
        writes[..fitted].iter().all(|w| w == "write=1"),
        "{writes:?}"
    );
    assert_eq!(
        writes[fitted],
        format!(
            "write!os-write-stdin: {} exceeds max_stdin_buffer ({bound}) (bytes queued, 64 more per write)",
            FILL + STDIN_WRITE_OVERHEAD + (fitted + 1) * (1 + STDIN_WRITE_OVERHEAD)
        )
    );
    assert!(
        writes[fitted..].iter().all(|w| w.starts_with("write!")),
        "{writes:?}"
    );
    wait_exits(&a, &[1]).await;
}

/// The OS pid a process printed as its first line of output.
fn os_pid(line: &str, pid: u64) -> u32 {
    line.strip_prefix(&format!("stdout:{pid}:\""))
        .and_then(|s| s.strip_suffix('"'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an OS pid: {line}"))
}

/// Whether the OS process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    theater_tests::support::running(pid)
}

/// Waits (up to 10 s) until the OS process `pid` is gone.
async fn wait_gone(pid: u32) {
    for _ in 0..500 {
        if !alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("process {pid} still runs");
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn process_without_the_callback_export_still_runs_and_drains_output() {
    let (rt, _dir) = runtime();
    let handlers: Vec<Arc<dyn theater_runtime::Handler>> = vec![
        Arc::new(ProcessHandler::new(allowed())),
        Arc::new(ProbeHandler::new()),
    ];
    let a = spawn(&rt, "mute", guests::PROCESS_MUTE, handlers, None)
        .await
        .unwrap();
    // 256 KiB is more than a pipe holds: the child exits only if its output is read (and dropped).
    assert_eq!(
        run(
            &a,
            "spawn:sh|-c|head -c 262144 /dev/zero; echo oops >&2; exit 4\nspawn:cat\nwrite:2,x\nclose:2"
        )
        .await,
        ["spawn=1", "spawn=2", "write=1", "close=0"]
    );
    for pid in [1, 2] {
        let mut status = String::new();
        for _ in 0..1000 {
            status = run(&a, &format!("status:{pid}")).await.remove(0);
            if !status.contains(",true,") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let code = if pid == 1 { 4 } else { 0 };
        assert!(
            status.starts_with(&format!("status={pid},false,{code},")),
            "{status}"
        );
    }
    let chain = a.chain();
    assert!(
        !chain
            .events()
            .iter()
            .any(|e| e.event_type.starts_with("theater:simple/process-handlers/")),
        "nothing was delivered"
    );
}

#[tokio::test]
async fn process_from_a_manifest_resolves_allowed_paths_and_fails_closed() {
    let (rt, _data) = runtime();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    let mut registry = theater_runtime::HandlerRegistry::new();
    registry.register("process", |config| {
        Ok(Arc::new(ProcessHandler::new(
            config.parse::<ProcessHandlerConfig>()?,
        )))
    });
    registry.register("probe", |_| Ok(Arc::new(ProbeHandler::new())));
    let manifest = |process: &str| {
        let text = format!(
            "name = \"process\"\ncomponent = {:?}\n\n[[handler]]\ntype = \"process\"\n{process}\n\n[[handler]]\ntype = \"probe\"\n",
            guests::PROCESS_ACTOR
        );
        theater_runtime::Manifest::parse(&text, dir.path()).unwrap()
    };

    let a = rt
        .spawn_manifest(
            &manifest("allowed_programs = [\"sh\"]\nallowed_paths = [\"work\"]\nmax_processes = 1"),
            &registry,
        )
        .await
        .unwrap();
    let work = dir.path().join("work").canonicalize().unwrap();
    assert_eq!(
        run(&a, &format!("spawn:sh|-c|pwd|@cwd={}", work.display())).await,
        ["spawn=1"]
    );
    let log = wait_exits(&a, &[1]).await;
    assert_eq!(log[0], format!("stdout:1:{:?}", work.display().to_string()));

    let missing = rt
        .spawn_manifest(&manifest("allowed_paths = [\"missing\"]"), &registry)
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    for part in ["process", "create_instance", "allowed_paths", "missing"] {
        assert!(missing.contains(part), "{part} in {missing}");
    }
    let unknown = rt
        .spawn_manifest(&manifest("allowed_program = [\"sh\"]"), &registry)
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("allowed_program"), "{unknown}");

    // Nothing granted by default.
    let closed = rt.spawn_manifest(&manifest(""), &registry).await.unwrap();
    assert_eq!(
        run(&closed, "spawn:sh|-c|true").await,
        ["spawn!permission denied: run sh (allowed_programs)"]
    );
}

/// A process that escapes its process group and session (`setsid`) is still killed: when its starter exits, and
/// when the actor stops while its starter runs. `setsid` does not fork here (a background job of `sh` is no group
/// leader), so the pid the escaped process sends back through a FIFO, which the starter prints, is the `sleep`.
#[tokio::test]
async fn process_nothing_escapes_with_setsid() {
    let (rt, _dir) = runtime();
    let a = actor(&rt, allowed(), None).await;
    let escape = r#"f=$(mktemp -u); mkfifo $f; setsid sh -c "echo \$\$ > $f; exec sleep 300" & read p < $f; rm $f; echo $p;"#;
    assert_eq!(run(&a, &format!("spawn:sh|-c|{escape}")).await, ["spawn=1"]);
    let log = wait_exits(&a, &[1]).await;
    let escaped = os_pid(&of(&log, 1)[0], 1);
    wait_gone(escaped).await;

    assert_eq!(
        run(&a, &format!("spawn:sh|-c|{escape} sleep 300")).await,
        ["spawn=2"]
    );
    let log = wait_log(&a, |l| l.iter().any(|l| l.starts_with("stdout:2:"))).await;
    let escaped = os_pid(&of(&log, 2)[0], 2);
    assert!(
        alive(escaped),
        "the escaped process runs while its starter does"
    );
    a.stop().await.unwrap();
    wait_gone(escaped).await;
}
