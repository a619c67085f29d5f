#!/bin/sh
cat /app/bin/greeting
