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
}

impl Diagnostics {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an error at `span`.
    pub fn error(&mut self, span: Span, message: impl fmt::Display) {
        self.errors.push(syn::Error::new(span, message));
    }

    /// Records an error over all of `tokens` (from their first to their last token).
    pub fn error_spanned(&mut self, tokens: impl ToTokens, message: impl fmt::Display) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records a `syn::Error` (possibly several combined).
    pub fn syn(&mut self, error: syn::Error) {
        self.errors.extend(error);
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
