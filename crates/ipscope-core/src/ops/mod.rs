//! Pixel algorithms as free functions over image views.
//!
//! Each module names the reference implementation it reproduces; the parity cases live in
//! `tests/algorithms/reference.rs`. ops never depend on assays.

/// Run-time instruction-set dispatch: a function that runs its body compiled for AVX2 when
/// the CPU has it (chosen at run time), else as built. Two forms:
///
/// * `dispatched!(name<T: Bound> = body(args) -> R);` defines `fn name` over an existing
///   `#[inline(always)] fn body` (the type parameter and the return type are optional);
/// * `dispatched! { /// docs  fn name<T: Bound>(args) -> R { … } }` defines `fn name` with its
///   body written in place.
///
/// The body must be inlined (`#[inline(always)]`; the second form does that itself): inlined
/// into a `#[target_feature]` function it is compiled with AVX2, while a closure handed to
/// such a function would keep its own baseline body. No fused multiply-add is enabled, so
/// both variants give the same bits (each user tests its variants against each other or a
/// scalar reference).
macro_rules! dispatched {
    ($name:ident $(<$g:ident: $bound:path>)? = $body:ident($($p:ident: $t:ty),* $(,)?) $(-> $ret:ty)?) => {
        fn $name $(<$g: $bound>)? ($($p: $t),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn avx2 $(<$g: $bound>)? ($($p: $t),*) $(-> $ret)? {
                    $body($($p),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    return unsafe { avx2($($p),*) };
                }
            }
            $body($($p),*)
        }
    };
    ($(#[$m:meta])* $vis:vis fn $name:ident $(<$g:ident: $bound:path>)? ($($p:ident: $t:ty),* $(,)?) $(-> $ret:ty)? $block:block) => {
        $(#[$m])*
        $vis fn $name $(<$g: $bound>)? ($($p: $t),*) $(-> $ret)? {
            #[inline(always)]
            fn body $(<$g: $bound>)? ($($p: $t),*) $(-> $ret)? $block
            $crate::ops::dispatched!(run $(<$g: $bound>)? = body($($p: $t),*) $(-> $ret)?);
            run($($p),*)
        }
    };
}
pub(crate) use dispatched;

pub mod blob;
pub mod distance;
pub mod eval;
pub mod expand;
pub mod filter;
pub mod illumination;
pub mod label;
pub mod measure;
pub mod morphology;
pub mod outline;
pub mod par;
pub mod peaks;
pub mod rank;
pub mod ridge;
pub(crate) use ipscope_image::scan;
pub mod signal;
pub mod skeleton;
pub mod threshold;
pub mod watershed;
