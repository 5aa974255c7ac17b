//! Where a user's secret comes from: a prompt without echo on a terminal,
//! else the first line of standard input (for scripts:
//! `echo "$SECRET" | webrocket-ctl set_secret /chat alice`). `--secret` on
//! the command line works too, but leaves the secret in the shell history
//! and in `ps` output.

use std::io::{BufRead, IsTerminal};

use crate::client::CtlError;

/// Reads a secret. On a terminal it is typed twice; on a pipe it is the
/// first line, without its line ending. End of input reads as empty.
pub fn read_secret() -> Result<String, CtlError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = prompt("Secret (empty for none): ")?;
        if first.is_empty() {
            return Ok(first);
        }
        if prompt("Repeat secret: ")? != first {
            return Err(CtlError::Usage("the two secrets differ".into()));
        }
        Ok(first)
    } else {
        first_line(stdin.lock())
    }
}

fn prompt(text: &str) -> Result<String, CtlError> {
    rpassword::prompt_password(text)
        .map_err(|e| CtlError::Usage(format!("cannot read the secret: {e}")))
}

/// The first line of `input`, without `\n` or `\r\n`.
fn first_line(mut input: impl BufRead) -> Result<String, CtlError> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| CtlError::Usage(format!("cannot read the secret from stdin: {e}")))?;
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_secret() {
        assert_eq!(first_line(&b"s3cret\nrest\n"[..]).unwrap(), "s3cret");
        assert_eq!(first_line(&b"dos\r\n"[..]).unwrap(), "dos");
        assert_eq!(first_line(&b"no newline"[..]).unwrap(), "no newline");
        assert_eq!(
            first_line(&b"  spaces kept  \n"[..]).unwrap(),
            "  spaces kept  "
        );
        assert_eq!(first_line(&b""[..]).unwrap(), "");
    }
}
