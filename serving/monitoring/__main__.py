from serving.monitoring.cli import app

app()
