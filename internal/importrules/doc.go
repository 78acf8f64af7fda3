// Package importrules holds no code: its test enforces the import rules
// of docs/architecture.md ("Rooms") over the whole module.
package importrules
