//! The agent-CLI adapters, one module each (built on [`crate::cli`]).

pub mod claude;
pub mod codex;
pub mod opencode;

#[cfg(test)]
pub(crate) mod arbitrary;
