//! Sagas (declarative, with compensation): the definition model and its
//! validation ([`definition`]), templates ([`template`]), and the saga
//! machine ([`machine`]).

pub mod definition;
pub mod machine;
pub mod template;

pub use definition::{Definition, Service};
pub use machine::Saga;
