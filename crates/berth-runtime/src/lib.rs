//! From image to running container, with no network: applying an image's layers
//! safely into an OCI runtime bundle's `rootfs/` ([`unpack`]), converting the
//! image config into the bundle's runtime `config.json` ([`config`]), the local
//! cache `berth run` keeps unpacked images in ([`cache`]), and driving an OCI
//! runtime such as runc through its command line ([`runtime`]).

pub mod cache;
pub mod config;
pub mod runtime;
pub mod unpack;
