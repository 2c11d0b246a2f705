// Package compat holds the files each Hearth release writes, as that release
// wrote them (testdata/<release>/), and the tests that read every one of them
// back with this release's readers: a WAL with every record type, its
// checkpoint, the blocks of a cut in a bucket layout. The next release adds
// its own directory beside these and keeps reading them (docs/upgrading.md).
// The ring's files (tokens, prepare-shutdown marker) are in ingester/ring's
// testdata.
package compat
