//! The nukleus data path.
pub mod ws;
