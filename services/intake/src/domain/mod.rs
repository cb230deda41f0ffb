//! Pure rules of intake: what a valid request for support is. No I/O.
pub mod contract;
pub mod correction;
pub mod matching;
pub mod screening;
