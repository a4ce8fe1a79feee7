//! What meshd's tests, demos and load tools share and no library needs: [`pki`], a throwaway CA.
//! The tools themselves are the binaries in `src/bin/`.

#![forbid(unsafe_code)]

pub mod pki;
