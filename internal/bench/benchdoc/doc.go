// Package benchdoc draws the charts of docs/BENCHMARKS.md and writes the
// sections that hold them, from the JSON and CSV the load generators
// write: the soak's samples and summary (package soak), the scaling run's
// reports (sc-client bench scale) and the handshake rates of the
// benchmark matrix.
//
// The charts are SVG, drawn with gonum.org/v1/plot: [SoakChart],
// [ScalingChart] and [HandshakeChart]. The sections are Markdown between
// marker comments ([Block]), so that each script replaces its own section
// and leaves the rest of the document alone: [SetBlock] replaces or adds
// one, [KeepBlocks] carries them over when scripts/bench.sh rewrites the
// document. internal/cmd/benchdoc is the command scripts/soak.sh and
// scripts/bench.sh call.
package benchdoc
