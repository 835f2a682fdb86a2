//! The `[[entries]]` tables (or an inline array of `{ cidr = ..., comment = ... }` tables).

use arcstr::ArcStr;
use std::ops::Range;
use std::sync::Arc;
use std::time::SystemTime;

use toml_edit::{Item, TableLike, Value};

use super::{ENTRY_KEYS, Reader, unknown_key};
use crate::Entry;
use crate::entries::{check_comment, parse_net};
use crate::error::quoted;

impl Reader<'_> {
    /// The entries at `key` (`entries`, or a list's `lists.NAME.entries`).
    pub(super) fn entries(&mut self, key: &str, item: &Item, out: &mut Vec<Entry>) {
        let mut tables: Vec<(usize, &dyn TableLike, Option<Range<usize>>)> = Vec::new();
        match item {
            Item::ArrayOfTables(array) => {
                for (i, table) in array.iter().enumerate() {
                    tables.push((i + 1, table, table.span()));
                }
            }
            Item::Value(Value::Array(array)) => {
                for (number, value) in array.iter().enumerate().map(|(i, v)| (i + 1, v)) {
                    match value.as_inline_table() {
                        Some(table) => tables.push((number, table, table.span())),
                        None => self.fail(
                            key,
                            value.span(),
                            Some(format!("entry {number}")),
                            "must be a table such as { cidr = \"198.18.0.0/24\", comment = \"office\" }"
                                .to_owned(),
                        ),
                    }
                }
            }
            other => {
                let message = format!(
                    "must be [[entries]] tables (double brackets), each with `cidr` and \
                     optionally `comment`, {}",
                    self.found(other)
                );
                self.fail(key, other.span(), None, message);
            }
        }
        for (number, table, span) in tables {
            if let Some(entry) = self.entry(key, number, table, span) {
                out.push(entry);
                self.layout.inline.push(number);
            }
        }
    }

    /// One `[[entries]]` table, `number` counting from 1.
    fn entry(
        &mut self,
        list_key: &str,
        number: usize,
        table: &dyn TableLike,
        span: Option<Range<usize>>,
    ) -> Option<Entry> {
        let mut cidr = None;
        let mut comment = None;
        let mut expires = None;
        // Whether the table is free of problems; if not, a missing `cidr` goes unmentioned
        // (it is usually the misspelt key).
        let mut valid = true;
        for (key, item) in table.iter() {
            let key_span = table.key(key).and_then(|k| k.span());
            match (key, item.as_str()) {
                ("cidr", Some(text)) => cidr = Some((text.trim(), item.span())),
                ("expires", _) => match end_time(item) {
                    Ok(end) => expires = Some(end),
                    Err(message) => {
                        valid = false;
                        let message = format!("{message}, {}", self.found(item));
                        self.fail(
                            list_key,
                            item.span(),
                            Some(format!("entry {number}")),
                            message,
                        );
                    }
                },
                ("comment", Some(text)) => comment = Some((text, item.span())),
                ("cidr" | "comment", None) => {
                    valid = false;
                    let message = match key {
                        "cidr" => {
                            "`cidr` must be a quoted address or CIDR, e.g. cidr = \"198.18.0.0/24\""
                        }
                        _ => "`comment` must be a quoted string",
                    };
                    let message = format!("{message}, {}", self.found(item));
                    self.fail(
                        list_key,
                        item.span().or(key_span),
                        Some(format!("entry {number}")),
                        message,
                    );
                }
                _ => {
                    valid = false;
                    let message = unknown_key(key, ENTRY_KEYS);
                    self.fail(list_key, key_span, Some(format!("entry {number}")), message);
                }
            }
        }
        let Some((text, cidr_span)) = cidr else {
            if valid {
                let message = "missing `cidr`, e.g. cidr = \"198.18.0.0/24\"".to_owned();
                self.fail(list_key, span, Some(format!("entry {number}")), message);
            }
            return None;
        };
        let label = Some(format!("entry {number} {}", quoted(text)));
        let net = parse_net(text)
            .map_err(|message| self.fail(list_key, cidr_span.clone(), label.clone(), message));
        let comment = match comment {
            None => Ok(String::new()),
            Some((text, comment_span)) => check_comment(text)
                .map(|()| text.to_owned())
                .map_err(|message| self.fail(list_key, comment_span, label, message)),
        };
        let (Ok(net), Ok(comment)) = (net, comment) else {
            return None;
        };
        let line = self.lines.line_of(cidr_span).unwrap_or_default() as u32;
        if let (true, Some(end)) = (valid, expires) {
            self.layout.ends.insert((self.file_number, line), end);
        }
        valid.then(|| Entry {
            net,
            comment: ArcStr::from(comment),
            file: Arc::new(self.path.to_path_buf()),
            line,
            list: 0,
        })
    }
}

/// An entry's `expires`: a TOML date-time with its offset (`2026-12-24T18:00:00Z`), or the
/// same quoted.
fn end_time(item: &Item) -> Result<SystemTime, String> {
    const FORM: &str = "`expires` must be a date and time with its offset, e.g. \
                        expires = 2026-12-24T18:00:00Z";
    let text = match item.as_value() {
        Some(Value::Datetime(datetime)) => datetime.value().to_string(),
        Some(Value::String(text)) => text.value().trim().to_owned(),
        _ => return Err(FORM.to_owned()),
    };
    let timestamp: jiff::Timestamp = text.parse().map_err(|_| match text.contains('T') {
        true => format!("{FORM} (a time without an offset is ambiguous: add Z for UTC, or +01:00)"),
        false => FORM.to_owned(),
    })?;
    Ok(SystemTime::from(timestamp))
}
