"""Importers (adapters): existing nvinfer key files, the older system's SQLite DB; the GLib key-file reader."""
