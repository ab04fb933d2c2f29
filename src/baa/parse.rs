//! The instruction-block parser (docs/BAA.md "Writing a block"): finds the fenced `baa`
//! blocks of an assistant message and reads each one's `@target.tool` line
//! and params. A pure function of the text — no I/O, no clock, no config
//! beyond the block limit — so ingest can run it on the caller's thread and
//! the tests can throw any input at it.
//!
//! Fences follow CommonMark closely enough that what a chat page renders as
//! a code block is what we see: a fence line has at most three spaces of
//! indentation and a run of at least three backticks or tildes; it is
//! closed by a line of the same character, at least as long, with nothing
//! but blanks after it; lines inside any fence are content, so a ```` ```baa ````
//! inside another fence is just text. The one deliberate difference: a
//! `baa` block with no closing fence is `invalid` (`unclosed_block`)
//! instead of running to the end of the message — a message cut off while
//! streaming must not run half a command. Blocks inside block quotes or
//! list items deeper than three spaces are not recognised.
//!
//! The scan is one pass over the lines and each block's params are parsed
//! once, so the cost is linear in the text; a message without the letters
//! `baa` is not scanned at all.

use serde_json::{Map, Value};

use super::Reason;
use crate::store::ParamsKind;

/// Blocks past `max_blocks_per_message` are kept (as `too_many_blocks`
/// rejections) up to this many; any further ones are dropped, so a hostile
/// message of a million empty blocks costs a bounded number of rows.
pub const MAX_EXTRA_BLOCKS: usize = 64;

/// One fenced `baa` block of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Counts the message's `baa` blocks from 0.
    pub index: usize,
    /// The block's content lines (fences excluded, the fence's indentation
    /// removed, line ends normalised to `\n`): what its id is hashed from.
    pub text: String,
    pub outcome: Outcome,
}

/// What a block asks for, or why it cannot run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Instruction(Instruction),
    /// Malformed: becomes an `invalid` execution with this reason. `name`
    /// is `(target, tool)` when the first line could be read.
    Invalid {
        reason: Reason,
        message: String,
        name: Option<(String, String)>,
    },
    /// Past `max_blocks_per_message`: becomes a `rejected` execution.
    TooMany,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// The first segment of `@target.tool`, e.g. `conductor`.
    pub target: String,
    /// The rest, e.g. `files.read`.
    pub tool: String,
    pub params: Params,
}

/// A block's params: a JSON object, or free text (empty when the block has
/// nothing after its first line).
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    Json(Map<String, Value>),
    Text(String),
}

impl Params {
    /// The stored `params_kind`.
    pub fn kind(&self) -> ParamsKind {
        match self {
            Params::Json(_) => ParamsKind::Json,
            Params::Text(_) => ParamsKind::Text,
        }
    }
}

/// Every `baa` block of `text`, in order, at most `max_blocks +
/// MAX_EXTRA_BLOCKS` of them; those at index `max_blocks` and later are
/// `TooMany` and their params are not read.
pub fn parse(text: &str, max_blocks: usize) -> Vec<Block> {
    let mut blocks = Vec::new();
    // Every baa fence contains these letters; most messages have none.
    if !text.contains("baa") {
        return blocks;
    }
    let limit = max_blocks.saturating_add(MAX_EXTRA_BLOCKS);
    let mut lines = Lines { rest: text };
    while let Some(line) = lines.next() {
        let Some(open) = fence(line) else { continue };
        if open.ch == b'`' && open.info.contains('`') {
            // CommonMark: a backtick fence's info string has no backticks
            // (``` ``x`` ``` is inline code, not a fence).
            continue;
        }
        let is_baa = open.info.split_ascii_whitespace().next() == Some("baa");
        let (content, closed) = collect_block(&mut lines, &open, is_baa);
        if !is_baa {
            continue;
        }
        let index = blocks.len();
        let content = content.unwrap_or_default();
        let outcome = if index >= max_blocks {
            Outcome::TooMany
        } else if !closed {
            invalid(Reason::UnclosedBlock, "the block has no closing fence")
        } else {
            read_block(&content)
        };
        blocks.push(Block { index, text: content, outcome });
        if blocks.len() >= limit {
            break;
        }
    }
    blocks
}

/// A fence line: its character, its length, its indentation and the info
/// string after it (trimmed).
struct Fence<'a> {
    ch: u8,
    len: usize,
    indent: usize,
    info: &'a str,
}

/// Reads `line` as a fence (opening or closing), if it is one.
fn fence(line: &str) -> Option<Fence<'_>> {
    let bytes = line.as_bytes();
    let indent = bytes.iter().take(4).take_while(|&&b| b == b' ').count();
    if indent > 3 {
        return None;
    }
    let ch = *bytes.get(indent)?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let len = bytes[indent..].iter().take_while(|&&b| b == ch).count();
    if len < 3 {
        return None;
    }
    Some(Fence { ch, len, indent, info: line[indent + len..].trim_matches([' ', '\t']) })
}

/// Consumes the lines of the block opened by `open`, through its closing
/// fence. Returns the content (only when `keep`, so other fences cost no
/// copy) and whether a closing fence was found.
fn collect_block(lines: &mut Lines<'_>, open: &Fence<'_>, keep: bool) -> (Option<String>, bool) {
    let mut content = keep.then(String::new);
    let mut first = true;
    for line in lines.by_ref() {
        if let Some(close) = fence(line) {
            if close.ch == open.ch && close.len >= open.len && close.info.is_empty() {
                return (content, true);
            }
        }
        if let Some(content) = content.as_mut() {
            if !first {
                content.push('\n');
            }
            content.push_str(strip_indent(line, open.indent));
        }
        first = false;
    }
    (content, false)
}

/// Removes up to `n` leading spaces (CommonMark: a content line loses as
/// much indentation as its opening fence had).
fn strip_indent(line: &str, n: usize) -> &str {
    let spaces = line.as_bytes().iter().take(n).take_while(|&&b| b == b' ').count();
    &line[spaces..]
}

/// The lines of a text, split on `\n`, each without its `\r\n` or `\n`.
struct Lines<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.find('\n') {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, ""),
        };
        self.rest = rest;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

fn invalid(reason: Reason, message: impl Into<String>) -> Outcome {
    Outcome::Invalid { reason, message: message.into(), name: None }
}

/// Reads a closed block's content: blank lines, the `@target.tool` line,
/// then the params (the rest of that line and the following lines).
fn read_block(content: &str) -> Outcome {
    let body = content.trim_start_matches(['\n', ' ', '\t']);
    if body.is_empty() {
        return invalid(Reason::MissingHeader, "the block is empty; its first line must be @<target>.<tool>");
    }
    let Some(after_at) = body.strip_prefix('@') else {
        return invalid(Reason::MissingHeader, "the block's first line must start with @<target>.<tool>");
    };
    let name_len = after_at
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'.')
        .count();
    let (name, rest) = after_at.split_at(name_len);
    if !rest.is_empty() && !rest.starts_with([' ', '\t', '\n']) {
        let shown: String = rest.chars().take(16).collect();
        return invalid(
            Reason::InvalidHeader,
            format!("unexpected {shown:?} after @{name}: segments are [a-z][a-z0-9_]*, then a space or a new line"),
        );
    }
    let Some((target, tool)) = split_name(name) else {
        return invalid(
            Reason::InvalidHeader,
            format!("@{name} is not @<target>.<tool> with segments [a-z][a-z0-9_]*"),
        );
    };
    let params_text = rest.trim_matches(|c: char| c.is_ascii_whitespace());
    let params = if params_text.starts_with('{') {
        let parsed = match serde_json::from_str::<Value>(params_text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err("params starting with { must be one JSON object".to_string()),
            Err(e) => Err(format!("params are not a JSON object: {e}")),
        };
        match parsed {
            Ok(map) => Params::Json(map),
            Err(message) => {
                let name = Some((target.to_string(), tool.to_string()));
                return Outcome::Invalid { reason: Reason::InvalidJson, message, name };
            }
        }
    } else {
        Params::Text(params_text.to_string())
    };
    Outcome::Instruction(Instruction { target: target.to_string(), tool: tool.to_string(), params })
}

/// `target.tool…` into its first segment and the rest, if every segment is
/// `[a-z][a-z0-9_]*` and there are at least two.
fn split_name(name: &str) -> Option<(&str, &str)> {
    let valid = |s: &str| s.as_bytes().first().is_some_and(u8::is_ascii_lowercase);
    if !name.split('.').all(valid) {
        return None;
    }
    name.split_once('.')
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
