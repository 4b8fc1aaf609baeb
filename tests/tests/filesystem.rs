//! End-to-end tests of `theater:simple/filesystem` (handlers.md §7) from the `local` guest, each with its own
//! temporary root.

use std::path::Path;

use theater_handler_filesystem::FilesystemConfig;
use theater_runtime::{ActorHandle, TheaterRuntime};
use theater_tests::guests;
use theater_tests::support::{
    DEEP_TREE_PERL, LocalConfig, local_handlers, runtime, script_lines as run, spawn,
};

async fn local(rt: &TheaterRuntime, filesystem: FilesystemConfig) -> anyhow::Result<ActorHandle> {
    let handlers = local_handlers(LocalConfig {
        filesystem,
        ..Default::default()
    });
    spawn(rt, "local", guests::LOCAL, handlers, None).await
}

fn rooted(root: &Path) -> FilesystemConfig {
    FilesystemConfig {
        path: Some(root.to_owned()),
        write: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn filesystem_every_file_function_from_a_guest() {
    let (rt, _dir) = runtime();
    let root = tempfile::tempdir().unwrap();
    let actor = local(&rt, rooted(root.path())).await.unwrap();
    let out = run(
        &actor,
        "fwrite:a.txt,hello;fread:a.txt;fmkdir:x/y/z;fwrite:x/y/z/f,deep;flist:;flist:x/y/z;fexists:a.txt;\
         fexists:missing;fdel:x;fdel:a.txt;fexists:a.txt;frmdir:x;fexists:x;frmdir:;fread:missing",
    )
    .await;
    assert_eq!(
        &out[..8],
        [
            "fwrite",
            "fread=hello",
            "fmkdir",
            "fwrite",
            "flist=a.txt,x",
            "flist=f",
            "fexists=true",
            "fexists=false"
        ]
    );
    assert!(
        out[8].starts_with("fdel!delete x: is a directory"),
        "{}",
        out[8]
    );
    assert_eq!(
        &out[9..13],
        ["fdel", "fexists=false", "frmdir", "fexists=false"]
    );
    assert_eq!(out[13], "frmdir!delete-dir: refusing to delete the root");
    assert!(out[14].starts_with("fread!read missing:"), "{}", out[14]);
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "the disk matches"
    );
}

/// `read-file` returns at most `max_read_bytes`, checked on the file's size before anything is allocated: a sparse
/// file of a terabyte is an `Err`, not an allocation that aborts the host process.
#[tokio::test]
async fn filesystem_read_file_is_bounded_by_max_read_bytes() {
    let (rt, _dir) = runtime();
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("sixteen"), [b'x'; 16]).unwrap();
    std::fs::write(root.path().join("seventeen"), [b'x'; 17]).unwrap();
    std::fs::File::create(root.path().join("sparse"))
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let actor = local(
        &rt,
        FilesystemConfig {
            max_read_bytes: 16,
            ..rooted(root.path())
        },
    )
    .await
    .unwrap();
    let out = run(&actor, "fread:sixteen;fread:seventeen;fread:sparse").await;
    assert_eq!(
        out,
        [
            "fread=xxxxxxxxxxxxxxxx",
            "fread!read seventeen: 17 bytes exceed max_read_bytes (16)",
            "fread!read sparse: 1099511627776 bytes exceed max_read_bytes (16)",
        ]
    );
    // The default bound (64 MiB) refuses the sparse file as well.
    let actor = local(&rt, rooted(root.path())).await.unwrap();
    assert_eq!(
        run(&actor, "fread:sparse").await,
        ["fread!read sparse: 1099511627776 bytes exceed max_read_bytes (67108864)"]
    );
}

/// Every guest path has at most 256 components and 4 096 bytes (cap-std's `create_dir_all` recurses once per
/// component), and `list-files` returns at most `max_list_entries` names: a directory of one more is an `Err`.
#[tokio::test]
async fn filesystem_paths_and_listings_are_bounded() {
    let (rt, _dir) = runtime();
    let root = tempfile::tempdir().unwrap();
    for (dir, entries) in [("fits", 3), ("full", 4)] {
        std::fs::create_dir(root.path().join(dir)).unwrap();
        for i in 0..entries {
            std::fs::write(root.path().join(dir).join(format!("f{i}")), b"").unwrap();
        }
    }
    let actor = local(
        &rt,
        FilesystemConfig {
            max_list_entries: 3,
            ..rooted(root.path())
        },
    )
    .await
    .unwrap();
    let deepest = "d/".repeat(256);
    let deeper = format!("{deepest}d");
    let long = "x".repeat(4097);
    let out = run(
        &actor,
        &format!(
            "flist:fits;flist:full;fmkdir:{deepest};fmkdir:{deeper};fexists:{deeper};frmdir:{deeper};\
             fread:{long};fwrite:{long},x"
        ),
    )
    .await;
    let components = "invalid path: more than 256 components";
    let bytes = "invalid path: more than 4096 bytes";
    assert_eq!(
        out,
        [
            "flist=f0,f1,f2".to_owned(),
            "flist!list full: more than 3 entries (max_list_entries)".to_owned(),
            "fmkdir".to_owned(),
            format!("fmkdir!{components}"),
            format!("fexists!{components}"),
            format!("frmdir!{components}"),
            format!("fread!{bytes}"),
            format!("fwrite!{bytes}"),
        ]
    );
    assert!(root.path().join(&deepest).is_dir());
    assert!(!root.path().join(&deeper).exists());
    // The default bound (10 000) lists the full directory.
    let actor = local(&rt, rooted(root.path())).await.unwrap();
    assert_eq!(run(&actor, "flist:full").await, ["flist=f0,f1,f2,f3"]);
}

#[tokio::test]
async fn filesystem_commands_run_in_the_root_with_only_path() {
    let (rt, _dir) = runtime();
    let root = tempfile::tempdir().unwrap();
    let stub = root.path().join("nix-stub");
    std::fs::write(&stub, "#!/bin/sh\necho \"nix $*\"\n").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&stub).unwrap().permissions(),
        0o755,
    );
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = FilesystemConfig {
        execute: true,
        allowed_commands: vec!["echo".into(), "sh".into(), stub.display().to_string()],
        nix_program: stub.display().to_string(),
        command_timeout_ms: 300,
        max_output_bytes: 4096,
        ..rooted(root.path())
    };
    let actor = local(&rt, config).await.unwrap();
    let out = run(
        &actor,
        "fexec:|echo|hi;fexec:|sh|-c|exit 3;fexec:|sh|-c|env;fexec:|sh|-c|pwd;fnix:|make it;\
         fexec:|sh|-c|sleep 5;fexec:|sh|-c|head -c 5000 /dev/zero;fexec:|cat|x",
    )
    .await;
    assert_eq!(out[0], r#"fexec=ok:0:"hi\n":"""#);
    assert!(out[1].starts_with("fexec=ok:3:"), "{}", out[1]);
    assert!(
        out[2].starts_with("fexec=ok:0:\"PATH=") && !out[2].contains("HOME="),
        "only PATH: {}",
        out[2]
    );
    let cwd = root.path().canonicalize().unwrap().display().to_string();
    assert_eq!(out[3], format!("fexec=ok:0:{:?}:\"\"", format!("{cwd}\n")));
    assert_eq!(
        out[4],
        r#"fnix=ok:0:"nix develop --command bash -c make it\n":"""#
    );
    assert_eq!(
        out[5],
        "fexec=error:timed out after 300 ms (command_timeout_ms); the command was killed"
    );
    assert_eq!(
        out[6],
        "fexec=error:output exceeds max_output_bytes (4096) on stdout; the command was killed"
    );
    assert_eq!(
        out[7],
        "fexec!permission denied: execute cat (allowed_commands)"
    );
}

#[tokio::test]
async fn filesystem_denials_leave_the_disk_unchanged() {
    let (rt, _dir) = runtime();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "outside").unwrap();
    let root = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link")).unwrap();
    let actor = local(&rt, rooted(root.path())).await.unwrap();
    let out = run(&actor, "fread:../x;fwrite:a/../../x,evil;fread:/etc/passwd;fread:link;fwrite:link,evil;fexec:|echo|x").await;
    assert!(
        out[0].starts_with("fread!invalid path \"../x\""),
        "{}",
        out[0]
    );
    assert!(out[1].starts_with("fwrite!invalid path"), "{}", out[1]);
    assert!(
        out[2].starts_with("fread!invalid path \"/etc/passwd\": absolute"),
        "{}",
        out[2]
    );
    assert!(
        out[3].starts_with("fread!read link:"),
        "symlink out of the root: {}",
        out[3]
    );
    assert!(out[4].starts_with("fwrite!write link:"), "{}", out[4]);
    assert_eq!(out[5], "fexec!permission denied: execute echo (execute)");
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "outside"
    );

    let read_only = FilesystemConfig {
        write: false,
        ..rooted(root.path())
    };
    let actor = local(&rt, read_only).await.unwrap();
    assert_eq!(
        run(&actor, "fwrite:new,x").await,
        ["fwrite!permission denied: write new (write)"]
    );
    let no_read = FilesystemConfig {
        read: false,
        ..rooted(root.path())
    };
    let actor = local(&rt, no_read).await.unwrap();
    assert_eq!(
        run(&actor, "flist:").await,
        ["flist!permission denied: list  (read)"]
    );
    assert!(!root.path().join("new").exists());
}

#[tokio::test]
async fn filesystem_new_dir_is_private_and_removed_and_a_missing_root_fails_the_spawn() {
    let (rt, data) = runtime();
    let actor = local(
        &rt,
        FilesystemConfig {
            new_dir: true,
            write: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        run(&actor, "fwrite:f,x;flist:").await,
        ["fwrite", "flist=f"]
    );
    let roots = new_dir_roots(data.path());
    assert_eq!(roots.len(), 1, "{roots:?}");
    let root = &roots[0];
    assert!(
        root.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("{}.", actor.id())),
        "{root:?}"
    );
    assert!(root.join("f").is_file());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(root).unwrap().permissions())
            & 0o777,
        0o700
    );
    actor.stop().await.unwrap();
    assert!(!root.exists(), "removed when the actor stops");
    assert!(new_dir_roots(data.path()).is_empty());

    let err = local(&rt, FilesystemConfig::default()).await.unwrap_err();
    assert!(format!("{err:#}").contains("(path)"), "{err:#}");
    let err = local(
        &rt,
        FilesystemConfig {
            path: Some("/no/such/dir".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("path: /no/such/dir"), "{err:#}");
}

/// A command the actor runs can build a tree deeper than any path (20,000 levels here), which
/// a recursive removal cannot remove: `std::fs::remove_dir_all` overflows its thread's stack, aborting the whole
/// runtime, and cap-std's runs out of descriptors. `delete-dir` removes such a tree, and so does the runtime
/// when it removes a `new_dir` root as the actor stops.
#[tokio::test]
async fn filesystem_trees_deeper_than_any_path_are_removed() {
    let (rt, data) = runtime();
    let actor = local(
        &rt,
        FilesystemConfig {
            new_dir: true,
            write: true,
            execute: true,
            allowed_commands: vec!["perl".into()],
            command_timeout_ms: 120_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let deep = format!("fexec:|perl|-e|{DEEP_TREE_PERL}");
    assert_eq!(
        run(&actor, &format!("{deep};frmdir:a;fexists:a")).await,
        [r#"fexec=ok:0:"":"""#, "frmdir", "fexists=false"]
    );
    assert_eq!(run(&actor, &deep).await, [r#"fexec=ok:0:"":"""#]);
    let roots = new_dir_roots(data.path());
    assert_eq!(roots.len(), 1, "{roots:?}");
    actor.stop().await.unwrap();
    // Removed by the handler's `start` task, which `stop` waits for only up to its grace period.
    assert_eq!(
        no_root_left(data.path()).await,
        Vec::<std::path::PathBuf>::new()
    );
}

/// A FIFO in the root (a command may make one: `mkfifo`, or a tarball's entry) is refused by `read-file` and
/// `write-file` at once: opened plainly, it would block a blocking thread until another process opened its other
/// end, beyond the actor's stop, and enough of them would take every blocking thread of the host.
#[tokio::test]
async fn filesystem_a_fifo_is_refused_not_waited_on() {
    let (rt, _dir) = runtime();
    let root = tempfile::tempdir().unwrap();
    let fifo = root.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let actor = local(&rt, rooted(root.path())).await.unwrap();
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        run(&actor, "fread:pipe;fwrite:pipe,x"),
    )
    .await;
    let Ok(out) = answer else {
        // Release the blocked thread (open the FIFO's other end), so that the runtime can end, then fail.
        let release = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo);
        drop(release);
        panic!("read-file waited on the FIFO");
    };
    assert_eq!(
        out,
        [
            "fread!read pipe: not a regular file",
            "fwrite!write pipe: not a regular file"
        ]
    );
}

/// The `new_dir` roots under the runtime's data folder.
fn new_dir_roots(data: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(data.join("filesystem")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Waits (up to 10 s) until no `new_dir` root is left under `data`: an instance dropped by a failed spawn
/// removes its root in a blocking task, maybe after the spawn has returned.
async fn no_root_left(data: &Path) -> Vec<std::path::PathBuf> {
    for _ in 0..200 {
        let roots = new_dir_roots(data);
        if roots.is_empty() {
            return roots;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    new_dir_roots(data)
}

#[tokio::test]
async fn filesystem_new_dir_is_removed_when_init_or_instantiation_fails() {
    let (rt, data) = runtime();
    // `init` fails: its state `run:` is not followed by UTF-8, after the handlers made the root.
    let handlers = local_handlers(LocalConfig::default());
    let err = spawn(
        &rt,
        "local",
        guests::LOCAL,
        handlers,
        Some(b"run:\xff".to_vec()),
    )
    .await
    .unwrap_err();
    assert!(format!("{err:#}").contains("init"), "{err:#}");
    assert_eq!(
        no_root_left(data.path()).await,
        Vec::<std::path::PathBuf>::new()
    );

    // Instantiation fails (a memory limit the component cannot meet), after `create_instance`.
    let options =
        theater_runtime::SpawnOptions::new("local", std::fs::read(guests::LOCAL).unwrap())
            .handlers(local_handlers(LocalConfig::default()))
            .limits(theater_runtime::manifest::Limits {
                memory_bytes: 1,
                ..Default::default()
            });
    let err = rt.spawn(options).await.unwrap_err();
    assert!(
        matches!(err, theater_runtime::SpawnError::Instantiate(_)),
        "{err:#}"
    );
    assert_eq!(
        no_root_left(data.path()).await,
        Vec::<std::path::PathBuf>::new()
    );
}

/// Whether process `pid` has ended (gone, or a zombie), waiting up to 5 s for a SIGKILL to take effect.
async fn ended(pid: u32) -> bool {
    for _ in 0..100 {
        if !theater_tests::support::running(pid) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// The pid a command printed: `fexec=ok:0:"<pid>\n":""`.
fn printed_pid(line: &str) -> u32 {
    line.strip_prefix("fexec=ok:0:\"")
        .and_then(|rest| rest.split_once("\\n"))
        .and_then(|(pid, _)| pid.parse().ok())
        .unwrap_or_else(|| panic!("a pid: {line}"))
}

fn commands(root: &Path, allowed: &[&str], timeout_ms: u64) -> FilesystemConfig {
    FilesystemConfig {
        execute: true,
        allowed_commands: allowed.iter().map(|a| (*a).to_owned()).collect(),
        command_timeout_ms: timeout_ms,
        max_output_bytes: 4096,
        ..rooted(root)
    }
}

#[tokio::test]
async fn filesystem_output_past_the_limit_stops_the_command_at_once() {
    let (rt, _dir) = runtime();
    let root = tempfile::tempdir().unwrap();
    let actor = local(&rt, commands(root.path(), &["sh", "yes"], 15_000))
        .await
        .unwrap();
    // 100 MB through a pipe needs a reader: stopped at the limit, `head` never finishes and `touch` never runs.
    // `yes` never ends by itself: the call returns at the limit, not at the 15 s timeout.
    let out = run(
        &actor,
        "fexec:|sh|-c|head -c 100000000 /dev/zero && touch finished;fexec:|yes",
    )
    .await;
    let limit =
        "fexec=error:output exceeds max_output_bytes (4096) on stdout; the command was killed";
    assert_eq!(out, [limit, limit]);
    assert!(
        !root.path().join("finished").exists(),
        "the command was killed at the limit, not read to its end"
    );
}

#[tokio::test]
async fn filesystem_a_symlinked_program_keeps_its_name() {
    // A multi-call binary (busybox): two links to one program, one of them allowed.
    let (rt, _dir) = runtime();
    let root = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    let sh = ["/bin/sh", "/usr/bin/sh"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    let mytool = bin.path().join("mytool");
    let other = bin.path().join("other");
    std::os::unix::fs::symlink(sh, &mytool).unwrap();
    std::os::unix::fs::symlink(sh, &other).unwrap();
    let (mytool, other) = (mytool.display().to_string(), other.display().to_string());
    let actor = local(&rt, commands(root.path(), &[&mytool], 5000))
        .await
        .unwrap();
    let out = run(
        &actor,
        &format!("fexec:|{mytool}|-c|echo hi;fexec:|{other}|-c|echo hi;fexec:|sh|-c|echo hi"),
    )
    .await;
    assert_eq!(out[0], r#"fexec=ok:0:"hi\n":"""#);
    assert_eq!(
        out[1],
        format!("fexec!permission denied: execute {other} (allowed_commands)")
    );
    assert_eq!(
        out[2],
        "fexec!permission denied: execute sh (allowed_commands)"
    );
}

#[tokio::test]
async fn filesystem_nothing_a_command_started_outlives_it() {
    let (rt, _dir) = runtime();
    let root = tempfile::tempdir().unwrap();
    let actor = local(&rt, commands(root.path(), &["sh"], 300))
        .await
        .unwrap();
    // The command returns at once, leaving a background job; then one that runs past its timeout.
    let out = run(
        &actor,
        "fexec:|sh|-c|sleep 300 >/dev/null 2>&1 & echo $!;\
         fexec:|sh|-c|sleep 300 >/dev/null 2>&1 & echo $! > pid && sleep 300",
    )
    .await;
    assert!(ended(printed_pid(&out[0])).await, "outlived its command");
    assert!(out[1].starts_with("fexec=error:timed out"), "{}", out[1]);
    let pid = std::fs::read_to_string(root.path().join("pid")).unwrap();
    assert!(
        ended(pid.trim().parse().unwrap()).await,
        "outlived its command's timeout"
    );

    // One that leaves its group and session (`setsid`) and sends its pid back through a FIFO.
    let out = run(
        &actor,
        r#"fexec:|sh|-c|f=$(mktemp -u) && mkfifo $f && { setsid sh -c "echo \$\$ > $f && exec sleep 300" >/dev/null 2>&1 & } && read p < $f && rm $f && echo $p"#,
    )
    .await;
    assert!(ended(printed_pid(&out[0])).await, "escaped with setsid");

    // The actor stops while a command runs: the call ends and takes the group with it.
    std::fs::remove_file(root.path().join("pid")).unwrap();
    let actor = local(&rt, commands(root.path(), &["sh"], 15_000))
        .await
        .unwrap();
    let call = tokio::spawn({
        let actor = actor.clone();
        async move {
            theater_tests::support::script(
                &actor,
                "fexec:|sh|-c|sleep 300 >/dev/null 2>&1 & echo $! > pid.tmp && mv pid.tmp pid && sleep 300",
            )
            .await
        }
    });
    while !root.path().join("pid").exists() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    actor.stop().await.unwrap();
    let answer = call.await.unwrap();
    assert!(
        answer
            .as_deref()
            .is_ok_and(|a| a == "fexec=error:the actor is stopping; the command was killed"),
        "{answer:?}"
    );
    let pid = std::fs::read_to_string(root.path().join("pid")).unwrap();
    assert!(
        ended(pid.trim().parse().unwrap()).await,
        "outlived its actor"
    );
}
