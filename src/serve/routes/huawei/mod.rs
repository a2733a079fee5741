//! Huawei Cloud's route families: KMS key import and CSMS secret backup,
//! with Huawei's AK/SK request signing beside the API key.

pub mod sign;
