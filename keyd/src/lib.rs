//! keyd
