//! Free text, one rule for every path: an entity's text fields, the comment of a deal's step
//! (a move's reason, a hold comment, a step of an imported history) and a file name are
//! refused for the same reasons in the same words, whether they come over HTTP, from the
//! command line, from an import or from a script.

use super::{EntityKind, FieldError};

/// The longest comment of a deal's step (the note the stage history keeps of a move, a hold,
/// a step brought in by an import), in characters.
pub const NOTE_MAX: usize = 2000;

/// The longest file name, in characters.
pub const FILE_NAME_MAX: usize = 255;

/// Text of at most `max` characters with no control character but line breaks and tabs
/// (so no NUL, no terminal escape sequence, no DEL): what is wrong, without the field.
pub fn check(value: &str, max: usize) -> Result<(), String> {
    let n = value.chars().count();
    if n > max {
        return Err(format!("is {n} characters long; the limit is {max}"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(format!("contains the control character {c:?}"));
    }
    Ok(())
}

/// [`check`] for a field of an entity kind.
pub fn field(kind: EntityKind, field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    check(value, max).map_err(|m| FieldError::new(kind, field, m))
}

/// A file name: not empty, at most [`FILE_NAME_MAX`] characters, on one line (no control
/// character at all: a name goes into headers and listings), and no path.
pub fn file_name(kind: EntityKind, field: &str, value: &str) -> Result<(), FieldError> {
    let fail = |m: String| Err(FieldError::new(kind, field, m));
    if value.trim().is_empty() {
        return fail("is required and must not be empty".into());
    }
    check(value, FILE_NAME_MAX).map_err(|m| FieldError::new(kind, field, m))?;
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return fail(format!("contains the control character {c:?}: a file name is one line"));
    }
    if value.contains(['/', '\\']) || matches!(value.trim(), "." | "..") {
        return fail("a file name must not contain a path separator".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        assert!(check("Строка\nи\tещё", 20).is_ok());
        assert_eq!(check("abc", 2).unwrap_err(), "is 3 characters long; the limit is 2");
        assert_eq!(check("a\0b", 10).unwrap_err(), "contains the control character '\\0'");
        assert!(check("\u{1b}[31mred", 20).unwrap_err().contains("'\\u{1b}'"));
        assert!(file_name(EntityKind::Attachment, "name", "offer.pdf").is_ok());
        for bad in ["", " ", "a\r\nb.pdf", "a\tb", "../x", "a/b", "."] {
            assert!(file_name(EntityKind::Attachment, "name", bad).is_err(), "{bad:?}");
        }
    }
}
