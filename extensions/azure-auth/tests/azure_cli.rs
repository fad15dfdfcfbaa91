//! `azure_auth` with method `azure_cli`: the real `azure_identity` credential runs a fake
//! `az` found on `PATH` (an absolute directory: the credential runs it from `/bin`).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::{SCOPE, TempDir, expect_child, expiry_of, number_of, run_child, running, start};

/// Writes an `az` that logs its arguments and prints a numbered token valid for an hour;
/// when `fail_file` exists it fails the way a logged-out CLI does.
fn fake_az(dir: &Path) {
    let script = format!(
        r#"#!/bin/sh
echo "$@" >> '{dir}/args'
if [ -e '{dir}/logged-out' ]; then
  echo "ERROR: Please run 'az login' to setup account." >&2
  exit 1
fi
n=$(( $(cat '{dir}/count' 2>/dev/null || echo 0) + 1 ))
echo "$n" > '{dir}/count'
exp=$(( $(date +%s) + 3600 ))
printf '{{"accessToken": "tok.%s.%s", "expiresOn": "2099-01-01 00:00:00.000000", "expires_on": %s, "tenant": "t", "tokenType": "Bearer"}}\n' "$n" "$exp" "$exp"
"#,
        dir = dir.display()
    );
    let path = dir.join("az");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn tokens_come_from_az_with_the_scope_and_tenant() {
    let dir = TempDir::new("azure");
    fake_az(dir.dir());
    run_child(
        "tokens_come_from_az_with_the_scope_and_tenant_child",
        &[("PATH", path_with(dir.dir()))],
    );
    let args = std::fs::read_to_string(dir.path("args")).unwrap();
    assert_eq!(
        args.lines().next(),
        Some(
            format!(
                "account get-access-token -o json --scope {SCOPE} --tenant my-tenant \
                 --subscription my-subscription"
            )
            .as_str()
        )
    );
}

#[test]
#[ignore = "run by `tokens_come_from_az_with_the_scope_and_tenant` in a child process"]
fn tokens_come_from_az_with_the_scope_and_tenant_child() {
    expect_child("tokens_come_from_az_with_the_scope_and_tenant_child");
    let running = running(&format!(
        "{{ scope: '{SCOPE}', method: azure_cli, tenant_id: my-tenant, \
         subscription: my-subscription }}"
    ));
    let token = running.current().expect("a token");
    let value = token.secret().expose();
    assert_eq!(number_of(value), 1);
    let expires = token
        .expires_at()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(expires, expiry_of(value));
    assert_eq!(running.handle.degraded(), None);
}

#[test]
fn a_logged_out_cli_is_reported_with_its_message() {
    let dir = TempDir::new("azure");
    fake_az(dir.dir());
    std::fs::write(dir.path("logged-out"), "").unwrap();
    run_child(
        "a_logged_out_cli_is_reported_with_its_message_child",
        &[("PATH", path_with(dir.dir()))],
    );
}

#[test]
#[ignore = "run by `a_logged_out_cli_is_reported_with_its_message` in a child process"]
fn a_logged_out_cli_is_reported_with_its_message_child() {
    expect_child("a_logged_out_cli_is_reported_with_its_message_child");
    let running = start(&format!(
        "{{ scope: '{SCOPE}', method: azure_cli, retry: {{ initial_interval: 50ms }} }}"
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let why = loop {
        if let Some(why) = running.handle.degraded() {
            break why;
        }
        assert!(std::time::Instant::now() < deadline, "no failure reported");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(
        why.contains(
            "AzureCliCredential authentication failed. ERROR: Please run 'az login' to setup \
             account."
        ),
        "{why}"
    );
    assert!(running.current().is_none());
}

#[test]
fn developer_tools_use_the_azure_cli_first() {
    let dir = TempDir::new("azure");
    fake_az(dir.dir());
    run_child(
        "developer_tools_use_the_azure_cli_first_child",
        &[("PATH", path_with(dir.dir()))],
    );
    let args = std::fs::read_to_string(dir.path("args")).unwrap();
    assert_eq!(
        args.lines().next(),
        Some(format!("account get-access-token -o json --scope {SCOPE}").as_str())
    );
}

#[test]
#[ignore = "run by `developer_tools_use_the_azure_cli_first` in a child process"]
fn developer_tools_use_the_azure_cli_first_child() {
    expect_child("developer_tools_use_the_azure_cli_first_child");
    let running = running(&format!("{{ scope: '{SCOPE}', method: developer_tools }}"));
    assert_eq!(number_of(&running.current_value()), 1);
}

/// An `az` that never answers: it records its own pid and that of a child it waits for.
fn hung_az(dir: &Path) {
    let script = format!(
        r#"#!/bin/sh
echo $$ > '{dir}/az.pid'
sleep 300 &
echo $! > '{dir}/sleep.pid'
wait
"#,
        dir = dir.display()
    );
    let path = dir.join("az");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Whether process `pid` runs (a zombie does not).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name's closing parenthesis.
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

#[test]
fn a_hung_az_is_killed_with_its_children_when_its_request_times_out() {
    let dir = TempDir::new("azure-hung");
    hung_az(dir.dir());
    run_child(
        "a_hung_az_is_killed_with_its_children_when_its_request_times_out_child",
        &[
            ("PATH", path_with(dir.dir())),
            ("FAKE_AZ_DIR", dir.dir().display().to_string()),
        ],
    );
}

#[test]
#[ignore = "run by `a_hung_az_is_killed_with_its_children_when_its_request_times_out` in a child process"]
fn a_hung_az_is_killed_with_its_children_when_its_request_times_out_child() {
    expect_child("a_hung_az_is_killed_with_its_children_when_its_request_times_out_child");
    let dir = std::path::PathBuf::from(std::env::var("FAKE_AZ_DIR").unwrap());
    let running = start(&format!(
        "{{ scope: '{SCOPE}', method: azure_cli, request_timeout: 500ms, \
         retry: {{ initial_interval: 10s }} }}"
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let why = loop {
        if let Some(why) = running.handle.degraded() {
            break why;
        }
        assert!(std::time::Instant::now() < deadline, "no timeout reported");
        // Sampling interval, not a wait for an outcome: the deadline bounds the loop.
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(
        why.contains("no answer within request_timeout (500ms)"),
        "{why}"
    );
    let pids: Vec<String> = ["az.pid", "sleep.pid"]
        .iter()
        .map(|file| {
            std::fs::read_to_string(dir.join(file))
                .unwrap()
                .trim()
                .to_owned()
        })
        .collect();
    // The kill is sent when the request is abandoned; the processes end within moments.
    while pids.iter().any(|pid| alive(pid)) {
        assert!(
            std::time::Instant::now() < deadline,
            "still running after the timeout: {pids:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
