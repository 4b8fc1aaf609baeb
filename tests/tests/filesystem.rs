//! End-to-end tests of `theater:simple/filesystem` (handlers.md §7) from the `local` guest, each with its own
//! temporary root.

use std::path::Path;

use theater_handler_filesystem::FilesystemConfig;
use theater_runtime::{ActorHandle, TheaterRuntime};
use theater_tests::guests;
use theater_tests::support::{LocalConfig, local_handlers, runtime, script_lines as run, spawn};

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
    assert_eq!(out[5], "fexec=error:timed out");
    assert_eq!(out[6], "fexec=error:output exceeds max_output_bytes");
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
    let root = data.path().join("filesystem").join(actor.id().as_str());
    assert!(root.join("f").is_file());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&root).unwrap().permissions())
            & 0o777,
        0o700
    );
    actor.stop().await.unwrap();
    assert!(!root.exists(), "removed when the actor stops");

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
