//! The web page's strings: one catalogue per language (`en.toml`, `ru.toml`), chosen by the
//! browser's `Accept-Language` or the `crmkit_lang` cookie the language links set.

use std::collections::BTreeMap;
use std::sync::LazyLock;

/// The languages there are catalogues for, the default first.
pub const LANGUAGES: [&str; 2] = ["en", "ru"];

static CATALOGUES: LazyLock<BTreeMap<&'static str, BTreeMap<String, String>>> = LazyLock::new(|| {
    let read = |lang: &str, text: &str| -> BTreeMap<String, String> {
        toml::from_str(text).unwrap_or_else(|e| panic!("the {lang} catalogue of the web page: {e}"))
    };
    BTreeMap::from([("en", read("en", include_str!("en.toml"))), ("ru", read("ru", include_str!("ru.toml")))])
});

/// The catalogue of `lang` (a language of [`LANGUAGES`]).
pub fn catalogue(lang: &str) -> &'static BTreeMap<String, String> {
    CATALOGUES.get(lang).unwrap_or_else(|| &CATALOGUES["en"])
}

/// The text of `key` in `lang`; the key itself if a catalogue lacks it (a test keeps the
/// catalogues whole).
pub fn t<'a>(lang: &str, key: &'a str) -> &'a str {
    match catalogue(lang).get(key) {
        // The catalogues live for the whole program.
        Some(text) => text.as_str(),
        None => key,
    }
}

/// The language a request is served in: the `crmkit_lang` cookie's, else the first of
/// `Accept-Language` there is a catalogue for, else English.
pub fn choose(cookie: Option<&str>, accept_language: Option<&str>) -> &'static str {
    if let Some(lang) = cookie.and_then(|c| LANGUAGES.iter().find(|l| **l == c)) {
        return lang;
    }
    let mut ranked: Vec<(f32, &'static str)> = Vec::new();
    for part in accept_language.unwrap_or_default().split(',') {
        let mut pieces = part.trim().split(';');
        let tag = pieces.next().unwrap_or_default().trim().to_ascii_lowercase();
        let q =
            pieces.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
        let primary = tag.split('-').next().unwrap_or_default();
        if let Some(lang) = LANGUAGES.iter().find(|l| **l == primary) {
            ranked.push((q, lang));
        }
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked.first().map_or(LANGUAGES[0], |(_, l)| l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_has_every_key() {
        let en: Vec<&String> = catalogue("en").keys().collect();
        for lang in LANGUAGES {
            let keys: Vec<&String> = catalogue(lang).keys().collect();
            assert_eq!(keys, en, "the {lang} catalogue's keys");
            assert!(catalogue(lang).values().all(|v| !v.trim().is_empty()), "{lang}: an empty text");
        }
    }

    /// Every key a page names literally (`t(lang, "key")`) is in the catalogues.
    #[test]
    fn every_key_the_pages_name_is_in_the_catalogue() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("pages.rs"),
            include_str!("board.rs"),
            include_str!("deal.rs"),
            include_str!("partners.rs"),
            include_str!("analytics.rs"),
            include_str!("claims.rs"),
            include_str!("admin.rs"),
            include_str!("programs.rs"),
        ];
        let mut named = 0;
        for source in sources {
            for piece in source.split("t(lang, \"").skip(1) {
                let key = piece.split('"').next().unwrap_or_default();
                assert!(catalogue("en").contains_key(key), "\"{key}\" is named by a page but not in the catalogues");
                named += 1;
            }
        }
        assert!(named > 50, "only {named} keys found: the pages' sources moved?");
    }

    #[test]
    fn the_language_follows_the_cookie_then_the_browser() {
        assert_eq!(choose(None, Some("ru-RU,ru;q=0.9,en-US;q=0.8")), "ru");
        assert_eq!(choose(None, Some("de-DE, en;q=0.5, ru;q=0.7")), "ru");
        assert_eq!(choose(None, Some("de-DE")), "en");
        assert_eq!(choose(Some("en"), Some("ru")), "en");
        assert_eq!(choose(Some("xx"), Some("ru")), "ru");
        assert_eq!(choose(None, None), "en");
    }
}
