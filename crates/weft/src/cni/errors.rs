//! Mapping weft's errors to CNI error codes.

use weft_cni::{CniError, Code};
use weft_datapath::DatapathError;
use weft_store::StoreError;

/// The most specific code for an error chain; the message is the whole
/// chain on one line, as the CLI prints it.
pub fn to_cni(e: anyhow::Error) -> CniError {
    let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    let mut code = Code::Internal;
    for cause in e.chain() {
        if let Some(s) = cause.downcast_ref::<StoreError>() {
            code = match s {
                StoreError::SubnetExhausted { .. } | StoreError::NoFreeSubnet => {
                    Code::AddressesExhausted
                }
                StoreError::Db { .. }
                | StoreError::Unreachable { .. }
                | StoreError::Etcd { .. }
                | StoreError::Contention { .. } => Code::TryAgainLater,
                StoreError::Invalid(_)
                | StoreError::SubnetOverlap { .. }
                | StoreError::SubnetOverlapsHost { .. }
                | StoreError::BridgeInUse { .. }
                | StoreError::BadAddress { .. }
                | StoreError::AddressInUse { .. }
                | StoreError::MacInUse { .. } => Code::InvalidConfig,
                _ => Code::Internal,
            };
            break;
        }
        if let Some(DatapathError::Netns { .. }) = cause.downcast_ref::<DatapathError>() {
            code = Code::InvalidEnvironment;
            break;
        }
        if let Some(DatapathError::ForeignLink { .. }) = cause.downcast_ref::<DatapathError>() {
            code = Code::InvalidConfig;
            break;
        }
        if cause.downcast_ref::<weft_model::ModelError>().is_some() {
            code = Code::InvalidConfig;
            break;
        }
    }
    CniError::new(code, msg.join(": "))
}
