from serving.experiments.cli import app

app()
