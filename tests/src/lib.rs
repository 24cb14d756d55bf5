//! Integration tests of crmkit live in `all/`; this library is empty.
