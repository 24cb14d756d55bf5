//! A `multipart/form-data` body (RFC 7578), as a page's upload form sends it, spooled to a
//! temporary file and split into its parts: the text fields in memory, the file by its
//! offset and length in the spooled file, so an upload is never held in memory whole.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

/// The longest text field read into memory, and the longest part headers.
const MAX_FIELD: u64 = 64 * 1024;
const MAX_HEADERS: usize = 16 * 1024;

/// The file a form sent: its field, the name and type the browser gave, where it lies.
#[derive(Debug, PartialEq, Eq)]
pub struct FilePart {
    pub field: String,
    pub name: String,
    pub mime: Option<String>,
    pub offset: u64,
    pub len: u64,
}

/// A form's parts: its text fields, and its first file (none when no file was chosen).
#[derive(Debug, Default)]
pub struct Parts {
    pub fields: HashMap<String, String>,
    pub file: Option<FilePart>,
}

/// The boundary a `Content-Type` of `multipart/form-data` names.
pub fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("boundary") && !v.is_empty() && v.len() <= 70).then(|| v.to_string())
    })
}

/// The offsets of every delimiter (`CRLF--boundary`, or `--boundary` at the very start) in
/// `input`, read in pieces.
fn delimiters(input: &mut (impl Read + Seek), boundary: &str) -> std::io::Result<Vec<u64>> {
    let pattern = format!("\r\n--{boundary}").into_bytes();
    input.seek(SeekFrom::Start(0))?;
    let mut found = Vec::new();
    let mut head = vec![0u8; pattern.len() - 2];
    let n = read_full(input, &mut head)?;
    if n == head.len() && head == pattern[2..] {
        found.push(0);
    }
    input.seek(SeekFrom::Start(0))?;
    let mut window: Vec<u8> = Vec::new();
    // The offset of window[0] in the input.
    let mut base = 0u64;
    let mut piece = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut piece)?;
        if n == 0 {
            break;
        }
        window.extend_from_slice(&piece[..n]);
        let mut from = 0;
        while let Some(at) = window[from..].windows(pattern.len()).position(|w| w == pattern) {
            found.push(base + (from + at) as u64);
            from += at + pattern.len();
        }
        // Keep what a match may still start in.
        let keep = (pattern.len() - 1).min(window.len());
        let cut = (window.len() - keep).max(from.min(window.len()));
        base += cut as u64;
        window.drain(..cut);
    }
    Ok(found)
}

fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A parameter (`name="…"`) of a `Content-Disposition` header.
fn param(header: &str, name: &str) -> Option<String> {
    let mut rest = header;
    while let Some(at) = rest.find(';') {
        rest = rest[at + 1..].trim_start();
        let Some((k, v)) = rest.split_once('=') else { continue };
        if !k.trim().eq_ignore_ascii_case(name) {
            continue;
        }
        return Some(match v.strip_prefix('"') {
            Some(quoted) => {
                let mut out = String::new();
                let mut chars = quoted.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => out.extend(chars.next()),
                        c => out.push(c),
                    }
                }
                out
            }
            None => v.split(';').next().unwrap_or_default().trim().to_string(),
        });
    }
    None
}

/// Splits the spooled body `input` at `boundary`; a body that is not well formed is an
/// error saying what is wrong with it.
pub fn split(input: &mut (impl Read + Seek), boundary: &str) -> Result<Parts, String> {
    let io = |e: std::io::Error| format!("reading the upload: {e}");
    let marks = delimiters(input, boundary).map_err(io)?;
    if marks.len() < 2 {
        return Err("the form's body is not multipart/form-data with its boundary".into());
    }
    let mut parts = Parts::default();
    for pair in marks.windows(2) {
        let (mark, next) = (pair[0], pair[1]);
        let start = mark + if mark == 0 { 2 } else { 4 } + boundary.len() as u64;
        input.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut head = vec![0u8; MAX_HEADERS.min((next - start) as usize)];
        let n = read_full(input, &mut head).map_err(io)?;
        head.truncate(n);
        if !head.starts_with(b"\r\n") {
            return Err("a part of the form does not start on a new line".into());
        }
        let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
            return Err("a part of the form has no end of its headers".into());
        };
        let headers = String::from_utf8_lossy(&head[2..end]).into_owned();
        let body = start + end as u64 + 4;
        let len = next.checked_sub(body).ok_or("a part of the form is cut off")?;
        let (mut disposition, mut mime) = (None, None);
        for line in headers.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else { continue };
            match k.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => disposition = Some(v.trim().to_string()),
                "content-type" => mime = Some(v.trim().to_string()),
                _ => {}
            }
        }
        let Some(disposition) = disposition else { return Err("a part of the form has no Content-Disposition".into()) };
        let Some(field) = param(&disposition, "name") else { return Err("a part of the form has no name".into()) };
        match param(&disposition, "filename") {
            // The first file chosen is the upload; a file input left empty sends no name.
            Some(name) => {
                if parts.file.is_none() && !name.is_empty() {
                    parts.file = Some(FilePart { field, name, mime, offset: body, len });
                }
            }
            None => {
                if len > MAX_FIELD {
                    return Err(format!("the form's field \"{field}\" is over {MAX_FIELD} bytes"));
                }
                let mut value = vec![0u8; len as usize];
                input.seek(SeekFrom::Start(body)).map_err(io)?;
                input.read_exact(&mut value).map_err(io)?;
                let value =
                    String::from_utf8(value).map_err(|_| format!("the form's field \"{field}\" is not UTF-8"))?;
                parts.fields.insert(field, value);
            }
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn body(boundary: &str, file: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc123\r\n").as_bytes(),
        );
        b.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"Счёт \\\"№1\\\".pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(file);
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        b
    }

    #[test]
    fn a_form_splits_into_its_fields_and_its_file_byte_for_byte() {
        let boundary = "----WebKitFormBoundaryX3b9";
        // Content that holds CRLFs, dashes and almost the delimiter, across read pieces.
        let mut file: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        file.extend_from_slice(format!("\r\n--{}", &boundary[..boundary.len() - 1]).as_bytes());
        file.extend_from_slice(b"\r\n\r\n--");
        let raw = body(boundary, &file);
        let parts = split(&mut Cursor::new(&raw), boundary).unwrap();
        assert_eq!(parts.fields["csrf"], "abc123");
        let f = parts.file.unwrap();
        assert_eq!(
            (f.field.as_str(), f.name.as_str(), f.mime.as_deref()),
            ("file", "Счёт \"№1\".pdf", Some("application/pdf"))
        );
        assert_eq!(&raw[f.offset as usize..(f.offset + f.len) as usize], &file[..]);
        // An empty file is a file of no bytes.
        let parts = split(&mut Cursor::new(body(boundary, b"")), boundary).unwrap();
        assert_eq!(parts.file.unwrap().len, 0);
    }

    #[test]
    fn a_body_that_is_not_a_form_says_what_is_wrong() {
        let b = "xyz";
        assert!(split(&mut Cursor::new(b"plain text"), b).unwrap_err().contains("not multipart"));
        let cut = format!("--{b}\r\nContent-Disposition: form-data; name=\"a\"\r\n--{b}--");
        assert!(split(&mut Cursor::new(cut.as_bytes()), b).unwrap_err().contains("no end of its headers"));
        let nameless = format!("--{b}\r\nContent-Disposition: form-data\r\n\r\nv\r\n--{b}--");
        assert!(split(&mut Cursor::new(nameless.as_bytes()), b).unwrap_err().contains("no name"));
        assert_eq!(boundary("multipart/form-data; boundary=\"abc\""), Some("abc".into()));
        assert_eq!(boundary("application/x-www-form-urlencoded"), None);
    }
}
