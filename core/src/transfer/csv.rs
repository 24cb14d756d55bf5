//! CSV as spreadsheets write it (RFC 4180): fields separated by a delimiter, quoted with `"`
//! when they hold the delimiter, a quote or a line break, a doubled `""` for a quote inside
//! quotes, records ending in LF, CRLF or CR. A UTF-8 byte-order mark is skipped. Fields are
//! returned as bytes: the caller checks UTF-8 so that it can name the column.

use std::io::{self, BufRead, Write};

/// A CSV file that cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// A quoted field is still open at the end of the file.
    #[error("a quoted field opened on line {line} is never closed (an unterminated quote)")]
    UnterminatedQuote { line: u64 },
    /// Something other than a delimiter or a line break follows a closing quote.
    #[error("line {line}: {found:?} after the closing quote of a field; a quote inside a quoted field is written twice (\"\")")]
    AfterQuote { line: u64, found: char },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// A record read: its fields and where it starts.
#[derive(Clone, Debug, Default)]
pub struct Record {
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// The line the record starts on (1-based).
    pub line: u64,
}

impl Record {
    /// The number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the record has no fields.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Field `i` (empty when the record is shorter).
    pub fn field(&self, i: usize) -> &[u8] {
        match self.ends.get(i) {
            Some(&end) => &self.buf[if i == 0 { 0 } else { self.ends[i - 1] }..end],
            None => &[],
        }
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    fn end_field(&mut self) {
        self.ends.push(self.buf.len());
    }

    /// Whether the record is one empty field: a blank line.
    fn is_blank(&self) -> bool {
        self.ends.len() == 1 && self.buf.is_empty()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field.
    Start,
    Unquoted,
    Quoted,
    /// A quote seen inside a quoted field: the end of the field or the first of `""`.
    QuoteInQuoted,
}

/// Reads records from a byte stream.
pub struct CsvReader<R> {
    inner: R,
    delimiter: u8,
    /// The line the reader is on.
    line: u64,
    /// A CR ended the last record; an LF right after it belongs to it.
    after_cr: bool,
    /// Bytes consumed so far.
    pub bytes: u64,
    started: bool,
}

impl<R: BufRead> CsvReader<R> {
    /// A reader with the given delimiter (`,` or `;`, as the file was written).
    pub fn new(inner: R, delimiter: u8) -> CsvReader<R> {
        CsvReader { inner, delimiter, line: 1, after_cr: false, bytes: 0, started: false }
    }

    /// Reads the next record into `rec`; `false` at the end of the file. Blank lines are
    /// skipped.
    pub fn read(&mut self, rec: &mut Record) -> Result<bool, CsvError> {
        loop {
            if !self.read_one(rec)? {
                return Ok(false);
            }
            if !rec.is_blank() {
                return Ok(true);
            }
        }
    }

    fn read_one(&mut self, rec: &mut Record) -> Result<bool, CsvError> {
        rec.clear();
        if !self.started {
            self.started = true;
            let head = self.inner.fill_buf()?;
            if head.starts_with(b"\xEF\xBB\xBF") {
                self.inner.consume(3);
                self.bytes += 3;
            }
        }
        let mut state = State::Start;
        let mut quote_line = self.line;
        let mut any = false;
        rec.line = self.line;
        loop {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                return match state {
                    State::Quoted => Err(CsvError::UnterminatedQuote { line: quote_line }),
                    _ if !any => Ok(false),
                    _ => {
                        rec.end_field();
                        Ok(true)
                    }
                };
            }
            let mut i = 0;
            if self.after_cr {
                self.after_cr = false;
                if chunk[0] == b'\n' {
                    i = 1;
                }
            }
            let mut done = false;
            while i < chunk.len() {
                let b = chunk[i];
                i += 1;
                any = true;
                match state {
                    State::Start | State::Unquoted => {
                        if b == self.delimiter {
                            rec.end_field();
                            state = State::Start;
                        } else if b == b'\n' || b == b'\r' {
                            rec.end_field();
                            self.line += 1;
                            self.after_cr = b == b'\r';
                            done = true;
                            break;
                        } else if b == b'"' && state == State::Start {
                            state = State::Quoted;
                            quote_line = self.line;
                        } else {
                            rec.buf.push(b);
                            state = State::Unquoted;
                        }
                    }
                    State::Quoted => {
                        if b == b'"' {
                            state = State::QuoteInQuoted;
                        } else {
                            if b == b'\n' {
                                self.line += 1;
                            }
                            rec.buf.push(b);
                        }
                    }
                    State::QuoteInQuoted => {
                        if b == b'"' {
                            rec.buf.push(b'"');
                            state = State::Quoted;
                        } else if b == self.delimiter || b == b'\n' || b == b'\r' {
                            // The field has ended: the byte ends it as after any field.
                            state = State::Unquoted;
                            i -= 1;
                        } else {
                            return Err(CsvError::AfterQuote { line: self.line, found: b as char });
                        }
                    }
                }
            }
            self.inner.consume(i);
            self.bytes += i as u64;
            if done {
                if self.after_cr {
                    // Look at the next byte now, so `bytes` counts a CRLF whole.
                    let next = self.inner.fill_buf()?;
                    if next.first() == Some(&b'\n') {
                        self.inner.consume(1);
                        self.bytes += 1;
                    }
                    self.after_cr = false;
                }
                return Ok(true);
            }
        }
    }
}

/// Guesses the delimiter of a CSV file from its header line: `;` when it has more
/// semicolons than commas outside quotes (spreadsheets in many locales write `;`).
pub fn sniff_delimiter(head: &[u8]) -> u8 {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let (mut commas, mut semis, mut quoted) = (0, 0, false);
    for b in line {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => commas += 1,
            b';' if !quoted => semis += 1,
            _ => {}
        }
    }
    if semis > commas {
        b';'
    } else {
        b','
    }
}

/// Writes one record, quoting the fields that need it.
pub fn write_record<W: Write + ?Sized>(out: &mut W, fields: &[&str], delimiter: u8) -> io::Result<()> {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(&[delimiter])?;
        }
        let needs = f.bytes().any(|b| b == delimiter || b == b'"' || b == b'\n' || b == b'\r');
        if needs {
            out.write_all(b"\"")?;
            out.write_all(f.replace('"', "\"\"").as_bytes())?;
            out.write_all(b"\"")?;
        } else {
            out.write_all(f.as_bytes())?;
        }
    }
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8]) -> Result<Vec<(u64, Vec<String>)>, CsvError> {
        let mut r = CsvReader::new(text, b',');
        let mut rec = Record::default();
        let mut out = Vec::new();
        while r.read(&mut rec)? {
            out.push((rec.line, (0..rec.len()).map(|i| String::from_utf8(rec.field(i).to_vec()).unwrap()).collect()));
        }
        Ok(out)
    }

    #[test]
    fn quoted_fields_line_breaks_and_line_numbers() {
        let got = all(b"\xEF\xBB\xBFa,b,c\r\n1,\"x, \"\"y\"\"\",\"two\nlines\"\n\n2,,\r3,\"\",z").unwrap();
        assert_eq!(got[0], (1, vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(got[1], (2, vec!["1".into(), "x, \"y\"".into(), "two\nlines".into()]));
        assert_eq!(got[2], (5, vec!["2".into(), "".into(), "".into()]));
        assert_eq!(got[3], (6, vec!["3".into(), "".into(), "z".into()]));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn an_unterminated_quote_names_the_line_it_opened_on() {
        let err = all(b"a,b\n1,2\n3,\"open\n4,5\n").unwrap_err();
        assert!(matches!(err, CsvError::UnterminatedQuote { line: 3 }), "{err}");
        let err = all(b"a,b\n1,\"x\"y\n").unwrap_err();
        assert!(matches!(err, CsvError::AfterQuote { line: 2, found: 'y' }), "{err}");
    }

    #[test]
    fn written_records_read_back() {
        let rows =
            [vec!["plain", "with,comma", "quote \" inside", "line\nbreak", ""], vec!["; semi", " ", "x", "", "end"]];
        for delim in [b',', b';'] {
            let mut out = Vec::new();
            for r in &rows {
                write_record(&mut out, r, delim).unwrap();
            }
            let mut rd = CsvReader::new(&out[..], delim);
            let mut rec = Record::default();
            for r in &rows {
                assert!(rd.read(&mut rec).unwrap());
                let got: Vec<&str> = (0..rec.len()).map(|i| std::str::from_utf8(rec.field(i)).unwrap()).collect();
                assert_eq!(&got, r);
            }
            assert!(!rd.read(&mut rec).unwrap());
            assert_eq!(rd.bytes, out.len() as u64);
        }
    }

    #[test]
    fn the_delimiter_is_guessed_from_the_header() {
        assert_eq!(sniff_delimiter(b"name;tax_id;\"a,b\"\n1,2,3,4"), b';');
        assert_eq!(sniff_delimiter(b"name,tax_id\n"), b',');
    }
}
