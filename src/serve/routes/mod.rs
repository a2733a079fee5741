//! The route families, one module each.

pub mod huawei;
