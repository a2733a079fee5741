//! `hsmkey serve`: the reference systems' APIs over HTTP.

pub mod routes;
