//! Test support for biomamba, never compiled into a release binary (a dev-dependency of the
//! pipeline and the trainer): where the fixtures, golden models and sample data are
//! ([`fixtures`]), token shards for trainer tests ([`shards`]), the built `pipeline` binary ([`binaries`]), a faulty HTTP server for the
//! download tests and benchmark ([`test_server`]), and synthetic abstracts parts for the tokenize
//! tests and benchmark ([`synthetic`]), synthetic Wikipedia / C4 files ([`corpus`]), and the SIGKILL tests' helpers ([`process`]). Its own `tests/` are the cross-crate end-to-end tests.

pub mod binaries;
pub mod corpus;
pub mod fixtures;
pub mod process;
pub mod shards;
pub mod synthetic;
pub mod test_server;

pub use binaries::{pipeline_binary, trainer_binary, wgpu_available};
pub use fixtures::{fixtures_dir, golden_dir, sample_dir, workspace_dir};
