//! Parsing YAML into a value plus the source span of every node.
//!
//! `serde_yaml` parses and guards against hostile input (alias bombs, deep nesting, several
//! documents); a second pass with `saphyr-parser`, which reports where every event starts and
//! ends, records the span of each key and value by path, so that later checks can point at
//! the exact place in the file.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser};
use serde_yaml::Value;

use super::{Diagnostic, SourceFile, Span};

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Where a node sits in the document: `tasks.bump.follow_ups[0].prompt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// The document root.
    pub fn root() -> Self {
        Self::default()
    }

    /// How many keys and indexes deep it is.
    pub fn depth(&self) -> usize {
        self.0.len()
    }

    /// Its first `depth` segments.
    #[must_use]
    pub fn prefix(&self, depth: usize) -> Self {
        Self(self.0.iter().take(depth).cloned().collect())
    }

    /// Removes the key it names from its mapping in `value`; false when it names no key.
    pub fn remove_from(&self, value: &mut Value) -> bool {
        let Some((Segment::Key(last), parents)) = self.0.split_last() else {
            return false;
        };
        let mut node = value;
        for segment in parents {
            let next = match segment {
                Segment::Key(key) => node.get_mut(key.as_str()),
                Segment::Index(index) => node.get_mut(*index),
            };
            let Some(next) = next else { return false };
            node = next;
        }
        node.as_mapping_mut()
            .is_some_and(|mapping| mapping.remove(last.as_str()).is_some())
    }

    /// This path extended by a key.
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_owned()));
        path
    }

    /// This path extended by an index.
    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// Builds a path from keys: `KeyPath::of(&["tasks", "bump"])`.
    pub fn of(keys: &[&str]) -> Self {
        Self(keys.iter().map(|k| Segment::Key((*k).to_owned())).collect())
    }

    fn parent(&self) -> Option<Self> {
        let mut path = self.clone();
        path.0.pop().map(|_| path)
    }

    fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    fn pop(&mut self) {
        self.0.pop();
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct NodeSpans {
    key: Option<Span>,
    value: Span,
}

/// The source span of every key and value, by path.
#[derive(Debug, Default)]
pub struct Spans {
    nodes: HashMap<KeyPath, NodeSpans>,
}

impl Spans {
    /// The span of the value at `path`, or of its nearest ancestor that has one (a value
    /// reached through an alias or a merge key has no span of its own).
    pub fn value(&self, path: &KeyPath) -> Span {
        self.find(path).map_or(Span::point(0), |n| n.value)
    }

    /// The span of the key that holds `path`, falling back to the value's span.
    pub fn key(&self, path: &KeyPath) -> Span {
        self.find(path)
            .map_or(Span::point(0), |n| n.key.unwrap_or(n.value))
    }

    /// The deepest node whose key or value holds `offset`: where a problem found there is.
    pub fn node_at(&self, offset: usize) -> Option<&KeyPath> {
        let holds = |span: Span| span.start <= offset && offset < span.end.max(span.start + 1);
        self.nodes
            .iter()
            .filter(|(_, node)| holds(node.value) || node.key.is_some_and(holds))
            .max_by_key(|(path, _)| path.0.len())
            .map(|(path, _)| path)
    }

    /// From the start of the key at `path` to the end of its value.
    pub fn whole(&self, path: &KeyPath) -> Span {
        let value = self.value(path);
        let start = self
            .find(path)
            .and_then(|n| n.key)
            .map_or(value.start, |k| k.start);
        Span::new(start.min(value.start), value.end)
    }

    fn find(&self, path: &KeyPath) -> Option<&NodeSpans> {
        let mut path = path.clone();
        loop {
            if let Some(node) = self.nodes.get(&path) {
                return Some(node);
            }
            path = path.parent()?;
        }
    }
}

/// A parsed document.
#[derive(Debug)]
pub struct Document {
    /// The value, with merge keys applied.
    pub value: Value,
    /// Where each node is.
    pub spans: Spans,
}

/// Parses `file` as one YAML document.
pub fn parse(file: &SourceFile) -> Result<Document, Vec<Diagnostic>> {
    let parsed = serde_yaml::from_str::<Value>(file.text());
    // A duplicate key is reported by serde_yaml at its mapping; the span pass finds the key
    // itself and the first definition, and reports every duplicate at once.
    let duplicate = matches!(&parsed, Err(e) if e.to_string().contains("duplicate entry with key"));
    let mut value = match parsed {
        Ok(value) => value,
        Err(error) if !duplicate => return Err(vec![syntax_error(file, &error)]),
        Err(_) => Value::Null,
    };
    let (spans, duplicates) = index_spans(file)?;
    if !duplicates.is_empty() {
        return Err(duplicates);
    }
    if let Err(error) = value.apply_merge() {
        return Err(vec![Diagnostic::file(format!(
            "cannot apply a merge key (<<): {error}"
        ))]);
    }
    Ok(Document { value, spans })
}

fn syntax_error(file: &SourceFile, error: &serde_yaml::Error) -> Diagnostic {
    let message = error.to_string();
    // serde_yaml appends " at line L column C" to the message; the location is shown apart.
    let short = message.split(" at line ").next().unwrap_or(&message);
    let short = short.strip_suffix(',').unwrap_or(short);
    let Some(location) = error.location() else {
        return match short {
            "repetition limit exceeded" => Diagnostic::file(
                "the file expands to too many nodes through aliases (a YAML alias bomb)",
            )
            .help("orchestrate refuses documents whose aliases multiply their size; write the values out"),
            _ => Diagnostic::file(format!("invalid YAML: {short}")),
        };
    };
    let offset = file.offset(location.line(), location.column().saturating_sub(1));
    let span = Span::new(offset, offset + next_char_len(file.text(), offset));
    let help = if file.text()[file.offset(location.line(), 0)..].starts_with('\t')
        || short.contains("cannot start any token") && file.text()[offset..].starts_with('\t')
    {
        Some("YAML does not allow tabs for indentation: indent with spaces".to_owned())
    } else if let Some(quoted) = template_value_hint(file, location.line()) {
        Some(quoted)
    } else if let Some(indent) = indentation_hint(file, location.line(), location.column()) {
        Some(indent)
    } else if short.starts_with("recursion limit exceeded") {
        Some("workflows nest a few levels deep; this file nests more than 128".to_owned())
    } else if short.contains("more than one document") {
        Some("put one workflow in each file".to_owned())
    } else {
        None
    };
    let label = if short.starts_with("recursion limit") {
        "too deep here"
    } else {
        "here"
    };
    Diagnostic::at(span, format!("invalid YAML: {short}"), label).maybe_help(help)
}

/// The text of line `line` (from 1).
fn line_text(file: &SourceFile, line: usize) -> &str {
    let start = file.offset(line, 0);
    let rest = &file.text()[start..];
    rest.split('\n')
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
}

/// `key: {{ name }} and more` is a YAML mapping, then nonsense: a value that starts with
/// `{{` must be quoted. The hint writes the line quoted.
pub fn template_value_hint(file: &SourceFile, line: usize) -> Option<String> {
    let text = line_text(file, line);
    let (key, value) = text.split_once(": ")?;
    let value = value.trim();
    if !value.starts_with("{{") && !value.starts_with("{%") {
        return None;
    }
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    Some(format!(
        "a value that starts with `{{{{` is read as a YAML mapping: quote it: `{}: \"{escaped}\"`",
        key.trim()
    ))
}

/// An error at the first character of a line indented unlike the line above: most often
/// a key that should line up with its siblings.
fn indentation_hint(file: &SourceFile, line: usize, column: usize) -> Option<String> {
    let text = line_text(file, line);
    let indent = text.len() - text.trim_start_matches(' ').len();
    if column != indent + 1 || text.trim().is_empty() {
        return None;
    }
    let above = (1..line)
        .rev()
        .map(|l| line_text(file, l))
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))?;
    let above_indent = above.len() - above.trim_start_matches(' ').len();
    (above_indent != indent).then(|| {
        format!(
            "this line is indented {indent} spaces and the one above {above_indent}: keys of one mapping line up, and a nested one is indented further"
        )
    })
}

fn next_char_len(text: &str, offset: usize) -> usize {
    text.get(offset..)
        .and_then(|s| s.chars().next())
        .map_or(0, char::len_utf8)
}

struct Indexer<'a, 'input> {
    file: &'a SourceFile,
    events: Parser<'input, saphyr_parser::StrInput<'input>>,
    spans: Spans,
    duplicates: Vec<Diagnostic>,
}

fn index_spans(file: &SourceFile) -> Result<(Spans, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut indexer = Indexer {
        file,
        events: Parser::new_from_str(file.text()),
        spans: Spans::default(),
        duplicates: Vec::new(),
    };
    let mut path = KeyPath::root();
    while let Some((event, span)) = indexer.next()? {
        match event {
            Event::StreamStart | Event::DocumentStart(_) | Event::DocumentEnd => {}
            Event::StreamEnd => break,
            _ => {
                let value = indexer.node(&event, span, &mut path)?;
                indexer
                    .spans
                    .nodes
                    .insert(KeyPath::root(), NodeSpans { key: None, value });
            }
        }
    }
    Ok((indexer.spans, indexer.duplicates))
}

type Located<'input> = (Event<'input>, Span);

impl<'input> Indexer<'_, 'input> {
    fn next(&mut self) -> Result<Option<Located<'input>>, Vec<Diagnostic>> {
        match self.events.next_event() {
            None => Ok(None),
            Some(Ok((event, span))) => Ok(Some((event, self.span(span)))),
            Some(Err(error)) => {
                let at = self
                    .file
                    .offset(error.marker().line(), error.marker().col());
                Err(vec![Diagnostic::at(
                    Span::point(at),
                    format!("invalid YAML: {}", error.info()),
                    "here",
                )])
            }
        }
    }

    fn span(&self, span: saphyr_parser::Span) -> Span {
        let start = self.file.offset(span.start.line(), span.start.col());
        let end = self.file.offset(span.end.line(), span.end.col());
        Span::new(start, end)
    }

    fn expect_next(&mut self) -> Result<Located<'input>, Vec<Diagnostic>> {
        self.next()?
            .ok_or_else(|| vec![Diagnostic::file("invalid YAML: unexpected end of file")])
    }

    /// Records the node that starts with `event` and its children; returns its span.
    fn node(
        &mut self,
        event: &Event<'input>,
        span: Span,
        path: &mut KeyPath,
    ) -> Result<Span, Vec<Diagnostic>> {
        match event {
            Event::SequenceStart(..) => {
                let mut index = 0;
                loop {
                    let (event, child) = self.expect_next()?;
                    if matches!(event, Event::SequenceEnd) {
                        return Ok(Span::new(span.start, child.end));
                    }
                    path.push(Segment::Index(index));
                    let value = self.node(&event, child, path)?;
                    self.spans
                        .nodes
                        .insert(path.clone(), NodeSpans { key: None, value });
                    path.pop();
                    index += 1;
                }
            }
            Event::MappingStart(..) => {
                let mut seen: HashMap<String, Span> = HashMap::new();
                loop {
                    let (event, key_span) = self.expect_next()?;
                    if matches!(event, Event::MappingEnd) {
                        return Ok(Span::new(span.start, key_span.end));
                    }
                    let key = if let Event::Scalar(text, ..) = &event {
                        text.to_string()
                    } else {
                        // A complex key: walk it so the events stay in step; it has no path.
                        self.node(&event, key_span, &mut path.key("?"))?;
                        "?".to_owned()
                    };
                    if let Some(first) = seen.get(&key) {
                        self.duplicates.push(
                            Diagnostic::at(
                                key_span,
                                format!("duplicate key `{key}`"),
                                "defined again here",
                            )
                            .related(*first, "first defined here")
                            .help("YAML keys must be unique in a mapping; remove or rename one"),
                        );
                    } else {
                        seen.insert(key.clone(), key_span);
                    }
                    let (event, child) = self.expect_next()?;
                    path.push(Segment::Key(key));
                    let value = self.node(&event, child, path)?;
                    let spans = NodeSpans {
                        key: Some(key_span),
                        value,
                    };
                    self.spans.nodes.entry(path.clone()).or_insert(spans);
                    path.pop();
                }
            }
            _ => Ok(span),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_at(file: &SourceFile, span: Span) -> &str {
        &file.text()[span.start..span.end]
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let file = SourceFile::new(
            "t.yaml",
            "name: é\ntasks:\n  bump:\n    prompt: \"hi\"\n    needs: [a, b]\n",
        );
        let doc = parse(&file).unwrap();
        let prompt = KeyPath::of(&["tasks", "bump", "prompt"]);
        assert_eq!(text_at(&file, doc.spans.key(&prompt)), "prompt");
        assert_eq!(text_at(&file, doc.spans.value(&prompt)), "\"hi\"");
        let second = KeyPath::of(&["tasks", "bump", "needs"]).index(1);
        assert_eq!(text_at(&file, doc.spans.value(&second)), "b");
        assert_eq!(second.to_string(), "tasks.bump.needs[1]");
        // Unknown paths fall back to the nearest ancestor.
        let missing = KeyPath::of(&["tasks", "bump", "nope", "deeper"]);
        assert_eq!(
            doc.spans.key(&missing),
            doc.spans.key(&KeyPath::of(&["tasks", "bump"]))
        );
    }

    #[test]
    fn every_duplicate_key_is_reported_with_both_places() {
        let file = SourceFile::new("t.yaml", "a: 1\nb: 2\na: 3\nc:\n  x: 1\n  x: 2\n");
        let errors = parse(&file).unwrap_err();
        assert_eq!(errors.len(), 2);
        let (span, _) = errors[0].primary.clone().unwrap();
        assert_eq!(file.line_column(span.start), (3, 1));
        assert_eq!(file.line_column(errors[0].related[0].0.start), (1, 1));
    }

    #[test]
    fn merge_keys_are_applied() {
        let file = SourceFile::new("t.yaml", "base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n");
        let doc = parse(&file).unwrap();
        assert_eq!(doc.value["use"]["x"], Value::from(1));
    }
}
