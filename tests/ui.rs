//! The compile errors of `cnn!`: each case's `.stderr` documents one rule.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/syntax/*.rs");
    cases.compile_fail("tests/ui/options/*.rs");
    cases.compile_fail("tests/ui/shape/*.rs");
    cases.compile_fail("tests/ui/blocks/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
