//! `theater run --cluster`: the README's "Run a cluster" (two `theater run` processes, a ping and a pong actor
//! joined through a real `nats-server`); a host killed while a request waits on it, and while it runs a child
//! whose parent is on another host.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use theater_handler_message_server::MessageServerConfig;
use theater_tests::guests;
use theater_tests::nats::{NatsServer, host};
use theater_tests::peers::{peer, run, run_later};
use theater_tests::supervision::{one, supervisor_parent_manifest, wait_for_log};
use theater_tests::support::registry;

/// `tests/actors/cluster-demo/<name>.toml`, once the guest is built.
fn demo_manifest(name: &str) -> PathBuf {
    assert!(Path::new(guests::CLUSTER_DEMO).exists());
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../../tests/actors/cluster-demo/{name}.toml"))
}

/// `theater run <manifest> --cluster <url> --cluster-host <host> [args]` with its own data folder.
fn theater_run(manifest: &Path, url: &str, host: &str, data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_theater"));
    command
        .arg("run")
        .arg(manifest)
        .args(["--cluster", url, "--cluster-host", host, "--data-dir"])
        .arg(data);
    command
}

#[test]
fn two_theater_run_processes_exchange_messages_through_nats() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let pong_id = "4b1d7c1e-0000-4000-8000-00000000b0b0";
    let pong = theater_run(&demo_manifest("pong"), &nats.url(), "b", data.path())
        .args(["--id", pong_id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("theater run pong");
    // ping retries until pong serves its address: pong may still be compiling.
    let started = Instant::now();
    let ping = loop {
        let ping = theater_run(&demo_manifest("ping"), &nats.url(), "a", data.path())
            .env("PEER", pong_id)
            .output()
            .expect("theater run ping");
        if ping.status.success() || started.elapsed() > Duration::from_secs(60) {
            break ping;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    for i in 1..=3 {
        assert!(
            out.contains(&format!("{pong_id} answered: pong: ping {i}")),
            "{out}"
        );
    }
    // pong stops on ping's `bye`.
    let pong = pong.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&pong.stdout);
    assert!(pong.status.success(), "{out}");
    assert!(
        out.contains(&format!("actor pong is {pong_id} on host b of the cluster")),
        "{out}"
    );
    assert!(
        out.contains("request: ping 3") && out.contains("send: bye"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_on_a_killed_host_fails_as_a_stopped_actor() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let (ra, _da) = host(&nats.url(), "a").await;
    let config = MessageServerConfig {
        request_timeout_ms: 60_000,
        ..Default::default()
    };
    let a = peer(&ra, "a", config).await;
    // Host b: another process, `theater run` of the README's pong actor.
    let pong = uuid::Uuid::new_v4().to_string();
    let data = tempfile::tempdir().unwrap();
    let mut b = theater_run(&demo_manifest("pong"), &nats.url(), "b", data.path())
        .args(["--id", &pong])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("theater run");
    // Once b serves pong, a request reaches it.
    let started = Instant::now();
    loop {
        let out = run(&a, &format!("request:{pong},ping")).await;
        if out == "request=pong: ping" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "pong never answered: {out}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A request pong defers, then b dies without a word (SIGKILL).
    let waiting = run_later(&a, format!("request:{pong},defer-1"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    b.kill().unwrap();
    b.wait().unwrap();
    assert_eq!(
        waiting.await.unwrap(),
        format!("request!actor {pong} stopped")
    );
    // Noticed after host_timeout_ms (1.5 s here) and a heartbeat; the bound leaves room for a loaded machine and
    // stays far below the request's own 60 s timeout.
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(
        run(&a, &format!("send:{pong},x")).await,
        format!("send!actor {pong} not found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_hears_that_the_host_of_its_child_was_killed() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    // Host b: a `theater run` process, which serves children that supervisors elsewhere place on it.
    let data = tempfile::tempdir().unwrap();
    let mut b = theater_run(&demo_manifest("pong"), &nats.url(), "b", data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("theater run");
    // Host a: a parent allowed one manifest, the cluster-demo guest placed on host b.
    let (a, _da) = host(&nats.url(), "a").await;
    let dir = tempfile::tempdir().unwrap();
    let parent = supervisor_parent_manifest("allowed_manifests = [\"on-b.toml\"]");
    std::fs::write(dir.path().join("parent.toml"), parent).unwrap();
    let child = format!(
        "name = \"on-b\"\ncomponent = {:?}\nhost = \"b\"\n\n[[handler]]\ntype = \"runtime\"\n\n\
         [[handler]]\ntype = \"environment\"\n\n[[handler]]\ntype = \"message-server\"\n",
        guests::CLUSTER_DEMO
    );
    std::fs::write(dir.path().join("on-b.toml"), child).unwrap();
    let manifest = theater_runtime::Manifest::load(dir.path().join("parent.toml")).unwrap();
    let parent = a.spawn_manifest(&manifest, &registry()).await.unwrap();
    // Once b serves children (it may still be compiling), the child runs there.
    let started = Instant::now();
    let id = loop {
        let line = one(&parent, "spawn:on-b.toml").await;
        if let Some(id) = line.strip_prefix("spawn=") {
            break id.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never placed on b: {line}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        a.get(&id.parse().unwrap()).is_none(),
        "not on the parent's host"
    );
    // b dies without a word (SIGKILL): the parent hears it as its child's error.
    let killed = Instant::now();
    b.kill().unwrap();
    b.wait().unwrap();
    let lines = wait_for_log(&parent, "error:", Duration::from_secs(30)).await;
    assert_eq!(lines, [format!("error:{id}:internal:host b lost")]);
    // host_timeout_ms of host a (1.5 s) and a heartbeat, with room for a loaded machine.
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(one(&parent, "list").await, "list=");
}
