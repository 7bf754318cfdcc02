"""Local services for development, demos and tests: started by the project, never by hand."""
