//! The error accumulator: every problem found during expansion, each at its span, reported together.
//!
//! Modelled on serde_derive's `Ctxt`: checks push errors and carry on; nothing is emitted until
//! [`Diagnostics::finish`] says there were none.

use std::fmt;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

/// Errors collected during one expansion, in the order found. Each is a `syn::Error`, which keeps the first and
/// last span of the tokens it points at, so rustc underlines the whole type or signature.
#[derive(Debug, Default)]
pub struct Diagnostics {
    errors: Vec<syn::Error>,
    /// For each error, the `file:line:col` in a WIT file it is about, when known (a WIT syntax or name error).
    locations: Vec<Option<String>>,
}

impl Diagnostics {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error at `span`.
    pub fn error(&mut self, span: Span, message: impl fmt::Display) {
        self.push(syn::Error::new(span, message), None);
    }

    /// Records an error at `span` about `location` (`file:line:col`) in a WIT file.
    pub fn error_at(&mut self, span: Span, message: impl fmt::Display, location: Option<String>) {
        self.push(syn::Error::new(span, message), location);
    }

    /// Records an error over all of `tokens` (from their first to their last token).
    pub fn error_spanned(&mut self, tokens: impl ToTokens, message: impl fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message), None);
    }

    /// Records a `syn::Error` (possibly several combined).
    pub fn syn(&mut self, error: syn::Error) {
        for e in error {
            self.push(e, None);
        }
    }

    fn push(&mut self, error: syn::Error, location: Option<String>) {
        self.errors.push(error);
        self.locations.push(location);
    }

    /// Whether any error was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// How many errors were recorded.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether no error was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The messages, in order.
    pub fn messages(&self) -> impl Iterator<Item = String> + '_ {
        self.errors.iter().map(syn::Error::to_string)
    }

    /// The messages with the WIT location each is about, if known: what a command-line tool prints as
    /// `file:line:col: message`.
    pub fn located(&self) -> impl Iterator<Item = (Option<&str>, String)> + '_ {
        self.locations
            .iter()
            .map(Option::as_deref)
            .zip(self.messages())
    }

    /// `Ok(())` when there were no errors, else the diagnostics.
    pub fn finish(self) -> Result<(), Self> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// Moves `other`'s errors into `self`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.errors.extend(other.errors);
        self.locations.extend(other.locations);
    }

    /// One `compile_error!` per error, at its span.
    pub fn to_compile_errors(&self) -> TokenStream {
        self.errors
            .iter()
            .map(syn::Error::to_compile_error)
            .collect()
    }
}

impl fmt::Display for Diagnostics {
    /// One line per error; with proc-macro2's `span-locations` outside a macro, `line:col: ` prefixes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, msg) in self.messages().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "error: {msg}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<syn::Error> for Diagnostics {
    fn from(e: syn::Error) -> Self {
        let mut d = Self::new();
        d.syn(e);
        d
    }
}
