//! The config text being validated: byte spans turned into file, line and column, TOML errors
//! turned into messages that name the key and its section, and the checks of single values.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::ConfigError;

/// The text being validated, for turning byte spans into positions.
pub(super) struct Source<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a Path,
}

impl Source<'_> {
    /// The text before `offset` (moved back to a character boundary).
    fn before(&self, offset: usize) -> &str {
        let mut at = offset.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        &self.text[..at]
    }

    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let before = self.before(offset);
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// The `[table]` or `[[array]]` header in force at `offset` (none when the offset is on
    /// a header line itself: that key is a top-level one).
    fn section(&self, offset: usize) -> Option<&str> {
        let before = self.before(offset);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        if self.text[line_start..].trim_start().starts_with('[') {
            return None;
        }
        let before = &self.text[..line_start];
        before
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.split('#').next().unwrap_or(l).trim())
    }

    /// A number that must be above zero, or `default` when not given.
    pub(super) fn positive_or<T: PartialOrd + Default + Copy + fmt::Display>(
        &self,
        v: Option<Spanned<T>>,
        key: &str,
        default: T,
    ) -> Result<T, ConfigError> {
        v.map(|v| self.positive(v, key)).transpose().map(|v| v.unwrap_or(default))
    }

    /// A number that must be above zero.
    pub(super) fn positive<T: PartialOrd + Default + Copy + fmt::Display>(
        &self,
        v: Spanned<T>,
        key: &str,
    ) -> Result<T, ConfigError> {
        let n = *v.get_ref();
        if n > T::default() {
            Ok(n)
        } else {
            Err(self.error(v.span(), format!("{key} must be above zero, got {n}")))
        }
    }

    pub(super) fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError { file: self.file.to_path_buf(), line: Some(self.position(span.start)), message: message.into() }
    }

    pub(super) fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let mut message = e.message().trim().to_string();
        // The key path, which the error only prints when it has no input to quote.
        let mut bare = e.clone();
        bare.set_input(None);
        let key = bare
            .to_string()
            .lines()
            .find_map(|l| l.strip_prefix("in `").and_then(|k| k.strip_suffix('`')).map(str::to_string));
        if let Some(key) = key.filter(|_| !message.starts_with("unknown field")) {
            message = format!("{key}: {message}");
        }
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((key, expected)) = rest.split_once('`') {
                let expected = expected.trim_start_matches(", ").replace('`', "");
                let section =
                    e.span().and_then(|s| self.section(s.start)).map(|s| format!(" in {s}")).unwrap_or_default();
                message = format!("unknown key \"{key}\"{section} ({expected})");
            }
        }
        match e.span() {
            Some(span) => self.error(span, message),
            None => ConfigError { file: self.file.to_path_buf(), line: None, message },
        }
    }

    pub(super) fn ident(&self, id: &Spanned<String>, what: &str) -> Result<(), ConfigError> {
        let s = id.get_ref();
        let ok = s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && s.len() <= 64;
        if ok {
            Ok(())
        } else {
            Err(self.error(
                id.span(),
                format!("\"{s}\" in {what} must be an identifier: a-z, 0-9 and '_', starting with a letter"),
            ))
        }
    }
}
