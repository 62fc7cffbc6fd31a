from corewarding.cli import app

app()
