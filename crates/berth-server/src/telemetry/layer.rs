//! STUB being written.
