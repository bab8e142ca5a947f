//! Problems found in a workflow file, located and rendered with the source line.

use std::fmt;

use miette::{LabeledSpan, NamedSource, SourceCode};

use super::{SourceFile, Span};

/// One problem in a workflow file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, in one sentence.
    pub message: String,
    /// Where, with a short label under the source.
    pub primary: Option<(Span, String)>,
    /// Other places that explain the problem (the first definition of a duplicate...).
    pub related: Vec<(Span, String)>,
    /// How to fix it, when there is more to say than the message.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem at `span`, labelled `label`.
    pub fn at(span: Span, message: impl Into<String>, label: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            primary: Some((span, label.into())),
            related: Vec::new(),
            help: None,
        }
    }

    /// A problem with the file as a whole.
    pub fn file(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            primary: None,
            related: Vec::new(),
            help: None,
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds a hint when there is one.
    #[must_use]
    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help.or(self.help);
        self
    }

    /// Points at another place that explains the problem.
    #[must_use]
    pub fn related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }

    /// Where the problem starts, for ordering.
    pub fn offset(&self) -> usize {
        self.primary.as_ref().map_or(0, |(span, _)| span.start)
    }

    /// This problem with its file, ready for miette to render.
    pub fn in_file(&self, file: &SourceFile) -> Located {
        Located {
            diagnostic: self.clone(),
            source: NamedSource::new(file.name(), file.shared_text()),
            location: self
                .primary
                .as_ref()
                .map(|(span, _)| file.line_column(span.start)),
            file: file.name().to_owned(),
        }
    }
}

/// `did you mean` for a misspelt name among `candidates`.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// A diagnostic with its source file, rendered by miette.
#[derive(Debug)]
pub struct Located {
    diagnostic: Diagnostic,
    source: NamedSource<std::sync::Arc<str>>,
    location: Option<(usize, usize)>,
    file: String,
}

impl Located {
    /// The file's name, as the user wrote it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Line and column (from 1) where the problem starts, unless it is the whole file's.
    pub fn location(&self) -> Option<(usize, usize)> {
        self.location
    }

    /// What is wrong, without the position.
    pub fn message(&self) -> &str {
        &self.diagnostic.message
    }

    /// How to fix it, when there is more to say.
    pub fn hint(&self) -> Option<&str> {
        self.diagnostic.help.as_deref()
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The position leads the message so that editors and CI logs can jump to it, as
        // compilers do; miette repeats it above the snippet.
        match self.location {
            Some((line, column)) => write!(f, "{}:{line}:{column}: ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Located {}

impl miette::Diagnostic for Located {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.diagnostic
            .primary
            .as_ref()
            .map(|_| &self.source as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary =
            self.diagnostic.primary.iter().map(|(span, label)| {
                LabeledSpan::new_primary_with_span(Some(label.clone()), *span)
            });
        let related = self
            .diagnostic
            .related
            .iter()
            .map(|(span, label)| LabeledSpan::new_with_span(Some(label.clone()), *span));
        Some(Box::new(primary.chain(related)))
    }
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_close_names_only() {
        let keys = ["prompt", "needs", "follow_ups", "fleet"];
        assert_eq!(did_you_mean("promt", keys), Some("prompt"));
        assert_eq!(did_you_mean("followups", keys), Some("follow_ups"));
        assert_eq!(did_you_mean("zzz", keys), None);
    }
}
