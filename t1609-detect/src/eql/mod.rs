//! The EQL subset for single-event `process where <condition>` queries.
//!
//! Fields are resolved at load time to [`Field`]s, so an unknown field is a load error
//! and evaluation never looks names up.

mod ast;
mod eval;
mod lexer;
mod parser;

pub use ast::{Cmp, EqlError, Field, Kind, Node, Pattern, StrTest, Val};
pub use eval::{Ctx, ctx};
pub use parser::{parse_condition, parse_query};
