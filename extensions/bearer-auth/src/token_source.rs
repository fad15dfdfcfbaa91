//! Reading tokens from files: the client token file (one token) and the server's tokens file
//! (one token a line). Errors name the file and what is wrong with it, never its content.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use otap_df_core::secret::Secret;

/// What is wrong with a token file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// It does not exist (or a link in its path is dangling).
    Missing,
    /// It holds no token.
    Empty,
    /// It could not be read.
    Unreadable(String),
}

/// A token file could not give a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: FileProblem,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            FileProblem::Missing => write!(f, "token file `{path}` does not exist"),
            FileProblem::Empty => write!(f, "token file `{path}` holds no token"),
            FileProblem::Unreadable(why) => write!(f, "token file `{path}` cannot be read: {why}"),
        }
    }
}

impl std::error::Error for FileError {}

impl FileError {
    fn io(path: &Path, error: &io::Error) -> Self {
        let problem = if error.kind() == io::ErrorKind::NotFound {
            FileProblem::Missing
        } else {
            // The OS message only: `io::Error` of a read never carries the file's bytes.
            FileProblem::Unreadable(error.kind().to_string())
        };
        Self {
            path: path.to_owned(),
            problem,
        }
    }

    fn empty(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            problem: FileProblem::Empty,
        }
    }
}

/// The token of a client token file: its content without surrounding whitespace.
pub fn parse_token(path: &Path, content: String) -> Result<Secret, FileError> {
    // Held as a secret so that the file's bytes are zeroed when dropped.
    let content = Secret::new(content);
    let token = content.expose().trim();
    if token.is_empty() {
        return Err(FileError::empty(path));
    }
    Ok(Secret::new(token))
}

/// The tokens of a tokens file with their line numbers: one a line, surrounding whitespace,
/// blank lines and `#` comment lines ignored.
pub fn parse_tokens(path: &Path, content: String) -> Result<Vec<(Secret, usize)>, FileError> {
    let content = Secret::new(content);
    let tokens: Vec<(Secret, usize)> = content
        .expose()
        .lines()
        .enumerate()
        .map(|(i, line)| (line.trim(), i + 1))
        .filter(|(line, _)| !line.is_empty() && !line.starts_with('#'))
        .map(|(line, number)| (Secret::new(line), number))
        .collect();
    if tokens.is_empty() {
        return Err(FileError::empty(path));
    }
    Ok(tokens)
}

/// Reads `path` now, blocking (at construction, before anything runs).
pub fn read_blocking(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| FileError::io(path, &e))
}

/// Reads `path` on the runtime's blocking pool.
pub async fn read(path: &Path) -> Result<String, FileError> {
    tokio::fs::read_to_string(path)
        .await
        .map_err(|e| FileError::io(path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_is_trimmed_and_must_not_be_blank() {
        let path = Path::new("/t");
        let token = parse_token(path, " abc \n".into()).expect("token");
        assert_eq!(token.expose(), "abc");
        assert_eq!(
            parse_token(path, "\n \n".into()).err(),
            Some(FileError::empty(path))
        );
    }

    #[test]
    fn a_tokens_file_skips_comments_and_blank_lines_and_keeps_line_numbers() {
        let path = Path::new("/t");
        let tokens = parse_tokens(path, "# rotation\nold\n\n  new  \n".into()).expect("tokens");
        let shown: Vec<(&str, usize)> = tokens.iter().map(|(t, n)| (t.expose(), *n)).collect();
        assert_eq!(shown, [("old", 2), ("new", 4)]);
        assert_eq!(
            parse_tokens(path, "# only a comment\n".into()).err(),
            Some(FileError::empty(path))
        );
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let error = read_blocking(Path::new("/nonexistent/otap-df/token")).expect_err("missing");
        assert_eq!(
            error.to_string(),
            "token file `/nonexistent/otap-df/token` does not exist"
        );
    }
}
