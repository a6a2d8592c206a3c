"""Packaging for robbook. Metadata and requirements come from settings.ini (nbdev 2 layout)."""
from configparser import ConfigParser
from setuptools import find_packages, setup

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
c = cfg["DEFAULT"]

setup(
    name=c["lib_name"],
    version=c["version"],
    description=c["description"],
    author=c["author"],
    license="Apache-2.0",
    python_requires=">=" + c["min_python"],
    packages=find_packages(include=["robbook", "robbook.*"]),
    install_requires=c["requirements"].split(),
    # `pip install robbook` is the library; `robbook[book]` adds the chapters' and the book's packages
    extras_require={"book": c["book_requirements"].split(), "dev": c["dev_requirements"].split()},
    entry_points={"console_scripts": ["robbook=robbook.run:main"], "nbdev": ["robbook=robbook._modidx:d"]},
    include_package_data=True,
    zip_safe=False,
)
