"""The topology file: schema, YAML with lines, validation, the link graph."""
