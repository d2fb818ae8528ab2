//! The EQL subset for single-event `process where <condition>` queries.
//!
//! Fields are resolved at load time to [`Field`]s, so an unknown field is a load error
//! and evaluation never looks names up.

mod ast;
mod eval;
mod fields;
mod fold;
mod lexer;
mod parser;
mod set;

pub use ast::{Cmp, EqlError, EqlErrorKind, Node, Pattern, StrTest, Val};
pub(crate) use eval::glob_ci;
pub use eval::{Ctx, ctx};
pub use fields::{Attr, Field, FieldInfo, Kind, Provision, Who, registry};
pub(crate) use fold::kind_literals;
pub use parser::{parse_condition, parse_query};
pub use set::StrSet;
