//! Access control for `berth serve`, free of HTTP: who the caller is (htpasswd
//! passwords, tokens), what they may do (policies), and how often (rate limits).

pub mod htpasswd;
pub mod policy;
pub mod ratelimit;
pub mod token;
