from merchant_growth.cli import app

app()
