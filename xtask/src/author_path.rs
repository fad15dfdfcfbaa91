//! The extension author's path as the README writes it: every `sh` block of its "Write an
//! extension" section, run in order by `bash -eu` in an empty folder outside the workspace,
//! with `OTAP_DF` naming this checkout. It generates an extension crate, tests it, builds a
//! distribution with it and lists the distribution's components; the output must show the
//! extension with its crate. A README edit that breaks the path fails here.

use std::path::Path;
use std::process::Command;

use crate::scaffold::workspace_root;

/// The section of the root README whose shell blocks are the path.
const SECTION: &str = "## Write an extension";

/// What the path's last command (the distribution's `components`) prints, among the rest.
const EXPECTED: &[&str] = &[
    "  extension:vault_kv  ",
    "      from: acme-otap-df-vault-kv\n",
];

/// Runs the path; an error with the script's output when a step fails or the output lacks
/// the extension.
pub fn run() -> Result<(), String> {
    let root = workspace_root()?;
    let readme = std::fs::read_to_string(root.join("README.md"))
        .map_err(|e| format!("cannot read README.md: {e}"))?;
    let script = shell_blocks(&readme, SECTION)?;
    let dir = std::env::temp_dir().join(format!("otap-df-author-path-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let result = run_in(&root, &dir, &script);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(root: &Path, dir: &Path, script: &str) -> Result<(), String> {
    eprintln!(
        "==> the README's \"{SECTION}\" path in {} (OTAP_DF={})",
        dir.display(),
        root.display()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env("OTAP_DF", root)
        // The workspace's target directory: the checkout's crates, built with the same
        // features, are not built again (the commands are the README's either way).
        .env("CARGO_TARGET_DIR", root.join("target"))
        .output()
        .map_err(|e| format!("cannot run bash: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "the README's extension author path failed ({}):\n--- script\n{script}\n--- stdout\n\
             {stdout}\n--- stderr\n{stderr}",
            output.status
        ));
    }
    match EXPECTED.iter().find(|line| !stdout.contains(*line)) {
        None => Ok(()),
        Some(missing) => Err(format!(
            "the README's extension author path ran, but its distribution's components lack \
             {missing:?}:\n{stdout}"
        )),
    }
}

/// The `sh` code blocks of the section headed `heading` (up to the next `## `), joined.
fn shell_blocks(markdown: &str, heading: &str) -> Result<String, String> {
    let start = markdown
        .find(&format!("\n{heading}\n"))
        .ok_or_else(|| format!("README.md has no `{heading}` section"))?;
    let section = &markdown[start + 1..];
    let section = &section[..section[heading.len()..]
        .find("\n## ")
        .map_or(section.len(), |end| end + heading.len())];
    let mut script = String::new();
    let mut inside = false;
    for line in section.lines() {
        match (inside, line.trim_end()) {
            (false, "```sh") => inside = true,
            (true, "```") => inside = false,
            (true, line) => {
                script.push_str(line);
                script.push('\n');
            }
            (false, _) => {}
        }
    }
    if script.is_empty() {
        return Err(format!("README.md's `{heading}` section has no `sh` block"));
    }
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_blocks_of_one_section_are_joined_in_order() {
        let markdown = "# t\n\n## Other\n```sh\nno\n```\n## Write an extension\ntext\n\
                        ```sh\none\n```\n```rust\nnot\n```\n```sh\ntwo\n```\n## Next\n```sh\nno\n```\n";
        assert_eq!(
            shell_blocks(markdown, "## Write an extension"),
            Ok("one\ntwo\n".to_owned())
        );
        assert!(shell_blocks(markdown, "## Missing").is_err());
        assert!(
            shell_blocks("## Write an extension\nno block\n", "## Write an extension").is_err()
        );
    }

    #[test]
    fn the_readme_holds_the_path() {
        let root = workspace_root().expect("tests run inside the workspace");
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        let script = shell_blocks(&readme, SECTION).expect("the section's blocks");
        for step in ["new-extension vault_kv", "cargo test", "components"] {
            assert!(script.contains(step), "{step} in\n{script}");
        }
    }
}
