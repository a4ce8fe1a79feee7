//! What meshd's tests, demos and load tools share and no library needs: [`pki`], a throwaway CA (it
//! lives in meshd-testbed, which the demo's edge needs it in too).
//! The tools themselves are the binaries in `src/bin/`.

#![forbid(unsafe_code)]

pub use meshd_testbed::pki;
