//! The memory image: which mappings exist (`maps`) and which of their pages
//! hold data worth saving (`pages`).

pub mod maps;
pub mod pages;
